"""One daemon per state dir: `recorder run` holds an flock on `STATE_DIR/recorder.lock`.

The lock is the kernel's (flock), so a daemon killed with -9 leaves nothing to clean up;
the pid written into the file is only there to name the holder when a second daemon is
refused. Only `recorder run` takes it: the read commands (incidents, draft, close) work
beside a running daemon, as before.

The file is held open read-only: a daemon holding a file open for writing would keep its
filesystem from being remounted read-only. A state dir where the lock cannot be made at
all (read-only, not ours) is not a reason to stop watching: the daemon runs unlocked and
says so, as it runs with a store it cannot write.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from types import TracebackType

from recorder.store import ensure_private_dir

log = logging.getLogger("recorder.daemon")

LOCK_FILE = "recorder.lock"


class StateDirBusy(Exception):
    """Another process holds the state dir's lock."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        holder = f"another recorder (pid {pid})" if pid else "another recorder"
        super().__init__(
            f"{holder} is already running on the state dir {state_dir} "
            f"(it holds {state_dir / LOCK_FILE}); stop it first, or give this config "
            "its own state_dir"
        )
        self.pid = pid


def _holder(path: Path) -> int | None:
    """The pid the holder wrote; it writes it just after locking, so wait a moment."""
    for _ in range(20):
        try:
            text = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    return None


class StateLock:
    """The state dir's lock, held from `acquire` until `release` (or process exit)."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Take the lock or raise StateDirBusy naming the pid holding it."""
        path = state_dir / LOCK_FILE
        try:
            ensure_private_dir(state_dir)
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o600)
        except OSError:
            try:
                fd = os.open(path, os.O_RDONLY)  # a read-only filesystem: lock what is there
            except OSError as exc:
                log.warning(
                    "cannot lock the state dir (%s: %s): nothing stops a second daemon "
                    "from using it",
                    path,
                    exc.strerror or exc,
                )
                return cls(path, None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateDirBusy(state_dir, _holder(path)) from None
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
        except OSError:
            pass  # read-only or full: the lock holds all the same, unnamed
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            try:
                with open(self.path, "w", encoding="ascii"):
                    pass  # no pid left behind to mislead a reader
            except OSError:
                pass
            os.close(self._fd)  # closing releases the lock
            self._fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.release()
