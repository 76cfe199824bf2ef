"""Shared fixtures: a real sshd on loopback, and free ports.

`sshd` is session-scoped: generating keys and starting the daemon costs ~0.3 s, so every
test that needs SSH shares one server. Tests that must not disturb it (a changed host key,
a wrong user key) get their own known_hosts or key files from `SSHServer` helpers instead
of reconfiguring the daemon.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from recorder.config import SSHHostConfig


@pytest.fixture(autouse=True)
def _no_machine_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The CLI falls back to /etc/recorder/recorder.yml; a machine that has one must not
    change what a test's commands read."""
    import recorder.cli

    missing = tmp_path_factory.getbasetemp() / "no-etc-recorder.yml"
    monkeypatch.setattr(recorder.cli, "DEFAULT_CONFIG", missing)


SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Until something accepts on 127.0.0.1:port; fail with the daemon's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s: {log.read_text()}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its pid: TERM, then KILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def descendants(pid: int) -> list[int]:
    """Every living process below pid (children first seen in /proc, then theirs)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_process_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a daemon we started and whatever it forked (sshd leaves a process per
    connection running after the listener exits, and a leaked connection must not outlive
    the tests)."""
    children = descendants(proc.pid)
    stop_process(proc)
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def generate_key(path: Path, comment: str = "recorder-test") -> Path:
    """A fresh unencrypted ed25519 key pair at path (and path.pub)."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


@dataclass
class SSHServer:
    """A running sshd on 127.0.0.1:port that accepts `key` for `user`."""

    port: int
    user: str
    key: Path  # private key the server accepts
    known_hosts: Path  # holds the server's real host key, as `[127.0.0.1]:port`
    host_public_key: str  # "ssh-ed25519 AAAA..." of the server
    directory: Path
    log: Path
    pid: int

    @property
    def known_hosts_name(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def config(self, **overrides: Any) -> SSHHostConfig:
        """An SSHHostConfig that reaches this server; keyword arguments override fields."""
        fields: dict[str, Any] = {
            "address": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key": str(self.key),
            "known_hosts": str(self.known_hosts),
            "connect_timeout": 5.0,
            "command_timeout": 10.0,
        }
        fields.update(overrides)
        return SSHHostConfig.model_validate(fields)

    def write_known_hosts(self, path: Path, public_key: str | None = None) -> Path:
        """A known_hosts file naming this server with `public_key` (default: its real key)."""
        path.write_text(f"{self.known_hosts_name} {public_key or self.host_public_key}\n")
        return path


def _sshd_config(directory: Path, port: int, host_key: Path, authorized: Path) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            # The temp dir's modes are not sshd's business here; in production they are.
            "StrictModes no",
            # bash then skips ~/.bashrc (pyenv here): 6 ms a command instead of 150 ms,
            # and no shell init lock a killed session could leave behind.
            "SetEnv SHLVL=1",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "UsePAM no",
            # More than the default 10 so tests can run probes concurrently.
            "MaxSessions 30",
            "MaxStartups 100",
            f"Subsystem sftp {SFTP_SERVER}",
            "LogLevel VERBOSE",
            "",
        ]
    )


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """A real OpenSSH server on a free loopback port, with generated host and user keys."""
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (apt-get install openssh-server)")
    directory = tmp_path_factory.mktemp("sshd")
    host_key = generate_key(directory / "ssh_host_ed25519_key", "recorder-test-host")
    user_key = generate_key(directory / "id_ed25519", "recorder-test-user")
    authorized = directory / "authorized_keys"
    shutil.copyfile(user_key.with_suffix(".pub"), authorized)
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(_sshd_config(directory, port, host_key, authorized))
    # sshd refuses to start without its privilege separation directory, which Debian's
    # init script normally creates at boot; containers and CI machines often lack it.
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    log = directory / "sshd.log"
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        wait_for_port(port, proc, log, timeout=10)
        host_public = " ".join(host_key.with_suffix(".pub").read_text().split()[:2])
        known_hosts = directory / "known_hosts"
        server = SSHServer(
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            key=user_key,
            known_hosts=known_hosts,
            host_public_key=host_public,
            directory=directory,
            log=log,
            pid=proc.pid,
        )
        server.write_known_hosts(known_hosts)
        yield server
    finally:
        stop_process_tree(proc)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server on a free loopback port for the whole session."""
    from tests.postgres_fixture import start_postgres, stop_postgres

    server, proc = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server, proc)
