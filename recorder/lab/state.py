"""The lab's state (`<dir>/lab.json`) and the processes it owns.

lab.json is the lab's memory between commands and its truth for tests and benchmarks:

    {"version": 1, "backend": "local", "dir": "/abs/lab", "site": "example",
     "created_at": ISO, "capacity": {"rps": 50, "burst": 50},
     "recorder": {"config": "/abs/lab/recorder.yml", "listen": "127.0.0.1:PORT",
                  "state_dir": "/abs/lab/state"},
     "hosts": {"lb-01": {"role": "lb", "url": "http://127.0.0.1:PORT/", "port": PORT,
                         "prefix": "/abs/lab/lb-01", "nginx_pid": PID}, ...},
     "faults": [{"fault": "backend-5xx", "kind": "http-5xx", "host": "web-01",
                 "rate": 0.3, "since": ISO, ...}]}

It is written atomically (temp file and rename) under an exclusive lock, so a `break`
and a `fix` run at the same time cannot lose each other's changes.

A pid is only ever signalled after its /proc cmdline shows it is ours (it names a path
inside the lab), so a stale state file after a reboot never kills a stranger.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "lab.json"
LOCK_FILE = ".lab.lock"
STATE_VERSION = 1


def lab_command(action: str, directory: str | os.PathLike[str], backend: str = "local") -> str:
    """The `recorder lab ACTION` a refusal tells a person to run, naming the lab's
    directory: a bare `recorder lab up` would start a lab in ./lab (or
    $RECORDER_LAB_DIR), not the one the command was about."""
    words = ["recorder", "lab", action, "--dir", str(Path(directory).absolute())]
    if action == "up" and backend != "local":
        words += ["--backend", backend]
    return shlex.join(words)


class LabError(Exception):
    """What the lab cannot do, said plainly. `code` is the CLI's exit code: 2 for bad
    input (unknown fault or host, lab not up), 1 for refused or failed."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def load_state(directory: Path) -> dict[str, Any] | None:
    """The lab's state, or None when the directory holds no lab."""
    path = state_path(directory)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise LabError(f"{path} is not valid JSON; remove the lab directory and run up") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise LabError(f"{path} is not a lab state this version understands")
    return data


def save_state(directory: Path, data: dict[str, Any]) -> None:
    path = state_path(directory)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the lab's lock: one mutating command at a time (the directory must exist)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# ---- processes ---------------------------------------------------------------------


def read_pid(path: str | os.PathLike[str]) -> int | None:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int) -> bool:
    """Running, and not a zombie (an exited daemon waits for init, which may not reap)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[-1].split()[:1] not in (["Z"], ["X"])


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def owned(pid: int | None, marker: str) -> bool:
    """Whether pid is alive and is the process we started (its command line names marker)."""
    return bool(pid) and pid is not None and pid_alive(pid) and marker in cmdline(pid)


def children(pid: int) -> list[int]:
    """Live child processes of pid (nginx's workers)."""
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 1 and fields[1] == str(pid) and fields[0] not in ("Z", "X"):
            found.append(int(entry))
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of pids is alive; returns those still alive at the deadline."""
    remaining = [p for p in pids if pid_alive(p)]
    deadline = time.monotonic() + timeout
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [p for p in remaining if pid_alive(p)]
    return remaining


def stop_pid(pid: int | None, marker: str, timeout: float = 5.0) -> bool:
    """Stop one process of ours: TERM, then KILL if it lingers. False if it survives.

    A pid that is gone, or is no longer ours, counts as stopped."""
    if pid is None or not owned(pid, marker):
        return True
    group = [pid, *children(pid)]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    left = wait_gone(group, timeout)
    for p in left:
        if marker in cmdline(p) or p != pid:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return not wait_gone(left, 2.0)
