"""A real PostgreSQL (Debian's `postgresql` package) for the store tests: initdb in a
temp dir, one server on a free loopback port for the session, a fresh database per test,
stopped by its pid."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port

USER = "recorder"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    if found:
        return Path(found[-1]).parent
    which = shutil.which("postgres")
    return Path(which).parent if which else None


def _major(path: str) -> int:
    return int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0


@dataclass
class PostgresServer:
    port: int
    directory: Path
    password_file: Path
    pid: int
    _names: Iterator[int]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A URL of an empty database of its own (the password is in password_file)."""
        import psycopg

        name = f"t{next(self._names)}"
        password = self.password_file.read_text().strip()
        with psycopg.connect(self.url(), password=password, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def start_postgres() -> tuple[PostgresServer, subprocess.Popen[bytes]]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # Not under pytest's tmp dir: that is 0700 root's, and the server runs as nobody.
    directory = Path(tempfile.mkdtemp(prefix="recorder-pg-"))
    data = directory / "data"
    password_file = directory / "password"
    password_file.write_text("test-" + os.urandom(8).hex() + "\n")
    password_file.chmod(0o600)
    prefix: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root.
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        pw_copy = directory / "pwfile"
        shutil.copyfile(password_file, pw_copy)
        os.chown(pw_copy, nobody.pw_uid, nobody.pw_gid)
        prefix = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}"]
        prefix += ["--clear-groups", "--"]
    else:
        pw_copy = password_file
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256"]
        + [f"--pwfile={pw_copy}", "--no-sync", "-E", "UTF8", "--locale=C"],
        check=True,
        capture_output=True,
        cwd=directory,
        env={**os.environ, "HOME": str(directory)},
    )
    if pw_copy != password_file:
        pw_copy.unlink()
    port = free_port()
    log = directory / "postgres.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*prefix, str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
            + ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
            # Durability is not under test here: the machine is shared and slow.
            + ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            + ["-c", "full_page_writes=off", "-c", "max_connections=200"],
            stdin=subprocess.DEVNULL,
            cwd=directory,
            stdout=out,
            stderr=out,
        )
    server = PostgresServer(port, directory, password_file, proc.pid, itertools.count())
    _wait_ready(server, proc, log)
    return server, proc


def _wait_ready(server: PostgresServer, proc: subprocess.Popen[bytes], log: Path) -> None:
    import psycopg

    password = server.password_file.read_text().strip()
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {proc.returncode}: {log.read_text()}")
        try:
            psycopg.connect(server.url(), password=password, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_postgres(server: PostgresServer, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    shutil.rmtree(server.directory, ignore_errors=True)
