"""The machine the recorder runs on, optionally rooted at a prefix (a lab host in a
directory looks like `/` to the probes)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from probes.base import CommandResult, FileStat, HostUnreachable

# Kernel views are never under the prefix: a lab host's processes are this machine's.
_UNPREFIXED = ("/proc/", "/sys/", "/dev/")


def run_raw(argv: Sequence[str], timeout: float, what: str) -> tuple[int, bytes, bytes]:
    """Run argv (no shell), its total time bounded; HostUnreachable on timeout or no binary."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HostUnreachable(f"{what}: command timed out after {timeout:g}s: {argv[0]}") from None
    except FileNotFoundError:
        raise HostUnreachable(f"{what}: command not found: {argv[0]}") from None
    except PermissionError as exc:
        raise HostUnreachable(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    return done.returncode, done.stdout, done.stderr


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
