"""probes/follow.py on its own (issue 15): following a file through a real LocalHost, with
a sink that only collects lines, so rotation, truncation and the saved position are tested
apart from the error-rate window; and the error-rate probe's memory as an object each
scheduler job owns, not a module table."""

from __future__ import annotations

import os
from pathlib import Path

from probes import error_rate
from probes.follow import Follower, Position
from recorder.hosts.local import LocalHost
from recorder.scheduler import build_jobs, carry_states, run_probe
from tests.fixtures import lab_config

LOG = "/var/log/app.log"


class Collect:
    """A sink that keeps the lines it is given."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.uncounted: list[bytes] = []
        self.first = False
        self.long = 0

    def first_sight(self) -> None:
        self.first = True

    def add(self, chunk: bytes, *, counted: bool) -> None:
        got = [line for line in chunk.split(b"\n") if line]
        (self.lines if counted else self.uncounted).extend(got)

    def long_line(self, *, counted: bool) -> None:
        self.long += 1


def follow(root: Path, position: Position, *, rebuilding: bool = False) -> Collect:
    sink = Collect()
    Follower(LocalHost("web-01", prefix=str(root)), LOG, position, sink, 1 << 30).advance(
        rebuilding=rebuilding
    )
    return sink


def write(root: Path, text: str, mode: str = "a", path: str = LOG) -> None:
    with open(f"{root}{path}", mode, encoding="utf-8") as f:
        f.write(text)


def test_reads_new_lines_once_and_waits_for_a_partial_one(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    write(tmp_path, "a\nb\nc")
    pos = Position()
    first = follow(tmp_path, pos)
    assert first.first and first.lines == [b"a", b"b"]
    write(tmp_path, "\nd\n")
    again = follow(tmp_path, pos)
    assert not again.first and again.lines == [b"c", b"d"]
    assert follow(tmp_path, pos).lines == []


def test_rename_rotation_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    write(tmp_path, "a\n")
    pos = Position()
    follow(tmp_path, pos)
    write(tmp_path, "b\n")  # written after our read, before the rotation
    os.rename(f"{tmp_path}{LOG}", f"{tmp_path}{LOG}.1")
    write(tmp_path, "c\n", "w")
    assert follow(tmp_path, pos).lines == [b"b", b"c"]
    assert pos.rotations == 1


def test_copytruncate_reads_the_copy_then_the_file_from_its_start(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    write(tmp_path, "first line of the log\n")
    pos = Position()
    follow(tmp_path, pos)
    write(tmp_path, "b\n")
    Path(f"{tmp_path}{LOG}.1").write_bytes(Path(f"{tmp_path}{LOG}").read_bytes())
    write(tmp_path, "c\n", "w")  # truncated in place, then written again
    assert follow(tmp_path, pos).lines == [b"b", b"c"]
    assert pos.rotations == 1


def test_a_saved_position_resumes_and_rereads_before_it_uncounted(tmp_path: Path) -> None:
    (tmp_path / "var/log").mkdir(parents=True)
    write(tmp_path, "a\nb\n")
    pos = Position()
    follow(tmp_path, pos)
    write(tmp_path, "c\n")
    restored = Position()
    restored.restore_position(pos.position())  # a restarted recorder
    sink = follow(tmp_path, restored, rebuilding=True)
    assert (sink.uncounted, sink.lines) == ([b"a", b"b"], [b"c"])


def test_each_job_owns_its_error_rate_memory(tmp_path: Path) -> None:
    """No module table that tests reset: every error_rate job has its own LogState, a job
    keeps it between runs, and a reload hands it to the same job of the new config."""
    assert not hasattr(error_rate, "reset_state")
    config = lab_config(tmp_path / "state")
    jobs = [j for j in build_jobs(config) if j.probe == "error_rate"]
    assert jobs and all(isinstance(j.state, error_rate.LogState) for j in jobs)
    assert len({id(j.state) for j in jobs}) == len(jobs)
    assert all(j.state is None for j in build_jobs(config) if j.probe != "error_rate")
    again = build_jobs(config)
    carry_states(jobs, again)
    kept = {j.key: j.state for j in again if j.probe == "error_rate"}
    assert kept == {j.key: j.state for j in jobs}
    changed = config.model_copy(deep=True)
    for check in changed.checks:
        if "error_rate" in check.probes:
            probe_config = check.probes["error_rate"]
            check.probes["error_rate"] = probe_config.model_copy(update={"window": 7.0})
    fresh = build_jobs(changed)
    carry_states(jobs, fresh)
    assert not {id(j.state) for j in fresh} & {id(j.state) for j in jobs}


def test_a_job_reads_only_what_is_new_since_its_last_run(tmp_path: Path) -> None:
    (tmp_path / "var/log/nginx").mkdir(parents=True)
    line = '10.0.0.1 - - [23/Nov/2026:14:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "curl"\n'
    write(tmp_path, line * 5, path="/var/log/nginx/access.log")
    host = LocalHost("web-01", prefix=str(tmp_path))
    cfg = error_rate.Config(log="/var/log/nginx/access.log")
    memory = error_rate.LogState()
    assert run_probe(host, "error_rate", cfg, memory).details["lines_total"] == 5
    write(tmp_path, line, path="/var/log/nginx/access.log")
    assert run_probe(host, "error_rate", cfg, memory).details["lines_total"] == 6
    # Another job (or a restarted recorder without saved state) starts on its own.
    assert run_probe(host, "error_rate", cfg, error_rate.LogState()).details["lines_total"] == 6
    assert run_probe(host, "error_rate", cfg).details["bytes_read"] >= 6 * len(line)
