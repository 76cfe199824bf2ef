"""The machine the recorder runs on, optionally rooted at a prefix (a lab host in a
directory looks like `/` to the probes)."""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Sequence

from probes.base import CommandResult, FileStat, HostUnreachable

# Kernel views are never under the prefix: a lab host's processes are this machine's.
_UNPREFIXED = ("/proc/", "/sys/", "/dev/")


# Per output stream of one command, on every transport (local, docker exec, SSH). A host
# or container we watch may be the compromised one: within its time limit a command could
# otherwise stream gigabytes into the recorder's memory. The largest honest output is
# `nginx -T` of a big configuration, a few MB.
MAX_OUTPUT = 64 << 20


def output_too_large(what: str, command: str, limit: int) -> HostUnreachable:
    return HostUnreachable(f"{what}: {command} wrote more than {limit:,} bytes; stopped reading it")


def run_raw(
    argv: Sequence[str], timeout: float, what: str, max_output: int = MAX_OUTPUT
) -> tuple[int, bytes, bytes]:
    """Run argv (no shell), its total time and each output stream's size bounded;
    HostUnreachable on timeout, too much output or no binary."""
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except FileNotFoundError:
        raise HostUnreachable(f"{what}: command not found: {argv[0]}") from None
    except PermissionError as exc:
        raise HostUnreachable(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    assert proc.stdout is not None and proc.stderr is not None
    timed_out = HostUnreachable(f"{what}: command timed out after {timeout:g}s: {argv[0]}")
    deadline = time.monotonic() + timeout
    out, err = bytearray(), bytearray()
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buffer: bytearray = key.data
                    buffer.extend(chunk)
                    if len(buffer) > max_output:
                        raise output_too_large(what, argv[0], max_output)
        try:
            code = proc.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            raise timed_out from None
    except BaseException:
        proc.kill()  # our own child, by its pid
        proc.wait()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return code, bytes(out), bytes(err)


def run_bounded(argv: Sequence[str], timeout: float, what: str) -> CommandResult:
    code, out, err = run_raw(argv, timeout, what)
    return CommandResult(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def to_filestat(st: os.stat_result) -> FileStat:
    return FileStat(
        size=st.st_size, inode=st.st_ino, mtime=st.st_mtime, mode=st.st_mode, device=st.st_dev
    )


class LocalHost:
    def __init__(self, name: str, prefix: str = "/", address: str = "127.0.0.1") -> None:
        self.name = name
        self.address = address
        self.prefix = prefix.rstrip("/")

    def __repr__(self) -> str:
        return f"LocalHost({self.name!r}, prefix={self.prefix or '/'!r})"

    def real_path(self, path: str) -> str:
        if not self.prefix or not path.startswith("/") or path.startswith(_UNPREFIXED):
            return path
        return self.prefix + path

    def run(self, argv: Sequence[str], timeout: float) -> CommandResult:
        return run_bounded(argv, timeout, self.name)

    def read_text(self, path: str, limit: int = 16 * 1024 * 1024) -> str:
        with open(self.real_path(path), "rb") as f:
            return f.read(limit).decode("utf-8", "replace")

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with open(self.real_path(path), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def stat(self, path: str) -> FileStat:
        return to_filestat(os.stat(self.real_path(path)))

    def lstat(self, path: str) -> FileStat:
        return to_filestat(os.lstat(self.real_path(path)))

    def readlink(self, path: str) -> str:
        target = os.readlink(self.real_path(path))
        # A prefixed host shows link targets as its own paths, as `/` would see them.
        if self.prefix and target.startswith(self.prefix + "/"):
            return target[len(self.prefix) :]
        return target

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.real_path(path)))
