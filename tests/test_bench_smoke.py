"""Every benchmark script runs in smoke mode, so none can rot unnoticed.

These check that each script works end to end against the real recorder (real nginx, the
real daemon, the real lab) and prints its figures; they time nothing (CI times nothing,
the figures live in BENCHMARKS.md). The four scripts start together and run side by side,
each in its own scratch directory, to keep the whole module near half a minute.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
TIMEOUT = 150.0  # far above a normal smoke run; only a hang gets near it

# script -> (extra arguments, phrases its output must contain, keys its JSON must hold)
SCRIPTS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "logreader": (
        [],
        ["lines/s", "peak RSS MB", "counts agree", "ratio recorder/gawk", "compiled counter"],
        ["results", "ledger", "ratio_recorder_gawk"],
    ),
    # A 5-second healthy run instead of the smoke default of 20, to stay within budget.
    "detection": (
        ["--healthy-seconds", "5"],
        ["median s", "top cause right", "false incidents", "Gatus"],
        ["per_fault", "overall", "healthy", "runs"],
    ),
    "notify": (
        [],
        ["break to detection", "opening to message", "target: every message within 1 s"],
        ["runs", "summary", "faults"],
    ),
    "scale": ([], ["CPU % of 1 core", "peak RSS MB"], ["sizes"]),
    "endpoint": ([], ["/metrics with 10 targets", "webhook ingest"], ["metrics", "webhook"]),
    "alerts": ([], ["this: batch 3 of 50 new alerts"], ["this"]),
    "outage": ([], ["hosts of one service down", "round 1 ms/s"], ["ms_per_second"]),
    "noise": ([], ["false verdicts", "by the sudden-rise test", "failed after"], ["rows"]),
    # nginx-down once: the recorder twice and the Prometheus stack at 1 s (about 20 s).
    "peers": (
        [],
        ["Prometheus stack 1s", "recorder 1s", "worked out", "Gatus"],
        ["runs", "summary"],
    ),
    "pages": (
        [],
        ["p99 ms", "/incidents/ID (draft)", "/status (", "bytes per target per day"],
        ["pages", "incidents", "history"],
    ),
}


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path
    deadline: float
    returncode: int | None = None

    def finish(self) -> str:
        if self.returncode is None:
            try:
                self.returncode = self.proc.wait(max(0.0, self.deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop(self.proc)
                self.returncode = -1
        return self.log.read_text(encoding="utf-8", errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one script we started, by its pid: TERM lets it stop what it started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def selected(request: pytest.FixtureRequest) -> set[str]:
    """The scripts whose smoke test this session runs."""
    return {
        item.callspec.params["name"]
        for item in request.session.items
        if isinstance(item, pytest.Function)
        and item.module is request.module
        and hasattr(item, "callspec")
        and "name" in item.callspec.params
    }


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Run]]:
    base = tmp_path_factory.mktemp("bench")
    started: dict[str, Run] = {}
    try:
        for name, (extra, _, _) in SCRIPTS.items():
            if name not in selected(request):
                continue  # `-k peers` starts bench/peers.py alone, not every script
            work = base / name
            work.mkdir()
            env = {**os.environ, "BENCH_TMP": str(work / "tmp"), "BENCH_SMOKE": "1"}
            log = work / "output.txt"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, str(BENCH / f"{name}.py"), "--out", str(work), *extra],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=REPO,
                )
            started[name] = Run(proc, work, log, time.monotonic() + TIMEOUT)
        yield started
    finally:
        for run in started.values():
            stop(run.proc)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_bench_script_smoke(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    output = run.finish()
    assert run.returncode == 0, f"bench/{name}.py --smoke exited {run.returncode}:\n{output}"
    _, phrases, keys = SCRIPTS[name]
    for phrase in phrases:
        assert phrase in output, f"bench/{name}.py printed no {phrase!r}:\n{output}"
    assert "machine:" in output
    figures = json.loads((run.out / f"{name}.json").read_text(encoding="utf-8"))
    assert figures["smoke"] is True
    assert figures["machine"]["nproc"] >= 1
    for key in keys:
        assert figures.get(key), f"bench/{name}.py wrote no {key!r}: {sorted(figures)}"


def test_every_script_is_smoke_tested_and_run_by_run_all() -> None:
    """A new benchmark script must join this smoke test and bench/run-all.sh."""
    runnable = sorted(
        p.stem
        for p in BENCH.glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text(encoding="utf-8") and p.stem != "genlog"
    )
    assert sorted(SCRIPTS) == runnable
    text = (BENCH / "run-all.sh").read_text(encoding="utf-8")
    loop = re.search(r"^for script in (.+); do$", text, re.M)
    assert loop is not None, "run-all.sh lost its loop over the scripts"
    assert sorted(loop.group(1).split()) == runnable
