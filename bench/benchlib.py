"""What every benchmark script shares: the smoke switch, the machine's description, timed
child processes with their peak memory, the recorder daemon as a child, and the results.

The scripts import this as a sibling module (`python bench/NAME.py` puts bench/ on the
path). Nothing here is part of the recorder package: benchmarks measure it from outside,
the way a user runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
RECORDER = str(VENV_BIN / "recorder") if (VENV_BIN / "recorder").exists() else "recorder"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot go on (a tool is missing, a child died): said in one line."""


# ---- options ---------------------------------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get("BENCH_SMOKE", "") not in ("", "0"),
        help="tiny and fast: checks the script works, measures nothing worth quoting "
        "(also BENCH_SMOKE=1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("BENCH_OUT") or REPO / "bench" / "out"),
        help="where the JSON results go (default bench/out, or BENCH_OUT)",
    )
    return p


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks stop every process we started
    (a test or a user stopping a benchmark must not leave nginx or the daemon behind)."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)


def scratch_dir(name: str) -> Path:
    """A fresh temporary directory for one run (never inside the checkout)."""
    base = Path(os.environ.get("BENCH_TMP") or tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"recorder-bench-{name}-", dir=base))


def remove_scratch(path: Path, keep: bool = False) -> None:
    """Remove a run's scratch directory, unless asked to keep it (BENCH_KEEP=1, or a failure
    whose logs are worth reading): then say where it is."""
    if keep or os.environ.get("BENCH_KEEP", "") not in ("", "0"):
        print(f"kept for inspection: {path}")
        return
    shutil.rmtree(path, ignore_errors=True)


def raise_nofile_limit() -> int:
    """Raise our open-files soft limit to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the machine -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What BENCHMARKS.md must say about where the figures came from."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def machine_line() -> str:
    m = machine()
    return (
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}"
    )


# ---- statistics ------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[min(rank, len(ordered)) - 1])


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---- child processes ---------------------------------------------------------------------------


@dataclass
class Measured:
    """One child process run to its end: wall time, peak RSS, output."""

    argv: list[str]
    seconds: float
    maxrss_kb: int
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Measured:
        if self.returncode != 0:
            tail = self.stderr.strip().splitlines()[-5:]
            raise BenchError(f"{self.argv[0]} exited with {self.returncode}: " + " | ".join(tail))
        return self


GNU_TIME = "/usr/bin/time"


def run_measured(
    argv: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Measured:
    """Run argv to completion: wall time, peak RSS, output.

    Peak RSS comes from GNU time (`%M`) when it is installed, else from the child's VmHWM
    read every few milliseconds until it exits. Not from our own wait4(): Linux carries
    the forking parent's high-water mark into the child across exec, so every child of
    this (large) Python process would report at least our own RSS.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file,
    ):
        use_time = os.access(GNU_TIME, os.X_OK)
        full = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv] if use_time else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(
            full, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
        deadline = start + timeout
        hwm = 0
        while proc.poll() is None:
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise BenchError(f"{argv[0]} did not finish in {timeout:g}s")
            if not use_time:
                try:
                    hwm = max(hwm, proc_status_kb(proc.pid, "VmHWM"))
                except (OSError, BenchError):
                    pass
            time.sleep(0.003)
        seconds = time.perf_counter() - start
        if use_time:
            text = rss_file.read().strip().splitlines()
            hwm = int(text[-1]) if text and text[-1].isdigit() else 0
        out.seek(0)
        err.seek(0)
        return Measured(
            argv=list(argv),
            seconds=seconds,
            maxrss_kb=hwm,
            returncode=int(proc.returncode),
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def pinned(argv: Sequence[str], cpu: int = 0) -> list[str]:
    """argv on one core (taskset), so every contender gets the same single CPU."""
    return ["taskset", "-c", str(cpu), *argv]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")": state is field 3 of stat(5), so utime (14) and stime (15) sit at 11, 12.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kb(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmHWM: peak RSS, VmRSS: current)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def proc_threads(pid: int) -> int:
    return proc_status_kb(pid, "Threads")


# ---- loopback networking -----------------------------------------------------------------------


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing listens on now: all bound at once, then released."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(
    url: str, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int | None, bytes]:
    """(status, body); status None when nothing answered."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, ValueError):
        return None, b""


# ---- the recorder daemon as a child --------------------------------------------------------------


class Daemon:
    """`recorder --config CFG run` as our child: started, watched, stopped by its pid."""

    def __init__(
        self,
        config: Path,
        listen: str,
        log: Path,
        command: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.listen = listen
        self.log_path = log
        # Another recorder than this checkout's (a peer version measured in the same run).
        self.command = list(command) if command is not None else [RECORDER]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{self.listen}"

    def start(self, ready_timeout: float = 90.0) -> Daemon:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, "--config", str(self.config), "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            self.check_alive()
            status, _ = http_get(self.base_url + "/healthz", timeout=1.0)
            if status == 200:
                return self
            time.sleep(0.1)
        raise BenchError(
            f"the daemon is not healthy after {ready_timeout:g}s "
            f"(/healthz at {self.base_url}); log: {self.log_tail()}"
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"the daemon exited with {self.proc.returncode}; log: {self.log_tail()}"
            )

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


@contextmanager
def running_daemon(
    config: Path,
    listen: str,
    log: Path,
    command: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    daemon = Daemon(config, listen, log, command, env)
    try:
        yield daemon.start()
    finally:
        daemon.stop()


# ---- results -------------------------------------------------------------------------------------


def save_results(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    """Write one script's figures as JSON (with the machine they came from)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {
        "benchmark": name,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **data,
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def fmt_rate(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.1f}"


def verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"
