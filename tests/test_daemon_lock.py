"""One daemon per state dir: a second `recorder run` on it is refused at once, naming the
pid of the first, whatever address it would listen on; the read commands keep working
beside the running daemon. Real `recorder run` processes, stopped by pid."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from recorder.statelock import LOCK_FILE, StateDirBusy, StateLock
from tests.conftest import free_port
from tests.test_reliability_daemon import (
    RECORDER,
    DaemonProcess,
    RecordingSite,
    daemons,
    simple_config,
    site,
    write_config,
)

__all__ = ["daemons", "site"]  # fixtures, used by name


def test_a_second_daemon_on_the_state_dir_is_refused_naming_the_first(
    tmp_path: Path, daemons: list[DaemonProcess], site: RecordingSite
) -> None:
    state = tmp_path / "state"
    first_port, second_port = free_port(), free_port()
    first_config = write_config(
        tmp_path / "first.yml", simple_config(tmp_path, state, first_port, {"web": site.url})
    )
    first = DaemonProcess(first_config, tmp_path / "first.log", first_port)
    daemons.append(first)
    first.start()
    first.wait_healthy()
    assert first.proc is not None
    # Another config, another listen address, the same state dir.
    second_config = write_config(
        tmp_path / "second.yml", simple_config(tmp_path, state, second_port, {"web": site.url})
    )
    second = subprocess.run(
        [RECORDER, "run", "--config", str(second_config)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert second.returncode == 1, second.stderr
    assert f"pid {first.proc.pid}" in second.stderr, second.stderr
    assert "already running on the state dir" in second.stderr
    assert "Address already in use" not in second.stderr
    assert first.running and first.get("/healthz")[0] == 200

    # The read commands do not take the lock.
    listed = subprocess.run(
        [RECORDER, "incidents", "list", "--config", str(second_config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert listed.returncode == 0, listed.stderr

    # Once the first stops, the state dir is free again.
    assert first.stop() == 0, first.tail()
    third = DaemonProcess(second_config, tmp_path / "second.log", second_port)
    daemons.append(third)
    third.start()
    third.wait_healthy()
    assert third.proc is not None
    assert (state / LOCK_FILE).read_text().strip() == str(third.proc.pid)


def test_a_daemon_killed_with_9_leaves_no_stale_lock(tmp_path: Path) -> None:
    # The pid file outlives a killed holder; only the kernel's lock counts.
    state = tmp_path / "state"
    state.mkdir()
    (state / LOCK_FILE).write_text("999999\n")
    with StateLock.acquire(state):
        assert (state / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(StateDirBusy, match=f"pid {os.getpid()}"):
            StateLock.acquire(state)
    with StateLock.acquire(state):
        pass


def test_a_state_dir_that_cannot_hold_a_lock_still_runs(tmp_path: Path) -> None:
    # Nowhere to make the lock file (here: a file where the directory should be): the
    # daemon runs unlocked rather than stop watching, as with a store it cannot write.
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    lock = StateLock.acquire(blocked / "state")
    lock.release()


def test_the_lock_file_is_not_held_open_for_writing(tmp_path: Path) -> None:
    # A file held open for writing keeps a filesystem from being remounted read-only.
    state = tmp_path / "state"
    with StateLock.acquire(state) as lock:
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
        held = [
            fd for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(lock.path.resolve())
        ]
        assert len(held) == 1
        assert fcntl.fcntl(held[0], fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
