"""The scheduler: runs every configured probe on its interval, concurrently with a bound,
each run bounded by a timeout, so a slow or hung host never delays the others.

The scheduler, not the probe, owns timeouts and turns any exception into an `error`
observation. A job whose previous run is still in flight is not started again: a hung
host costs one worker per probe at most, never a growing pile.
"""

from __future__ import annotations

import functools
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from probes.base import Host, HostUnreachable, Observation, error_observation
from probes.registry import PROBES, STATEFUL
from recorder.config import Config
from recorder.hosts import build_host

log = logging.getLogger("recorder.scheduler")


@dataclass(eq=False)
class Job:
    host: Host
    probe: str
    config: BaseModel
    interval: float
    timeout: float
    for_: float
    recover_after: float
    next_due: float = 0.0
    future: Future[Observation] | None = None
    deadline: float = 0.0
    started: float = 0.0
    timed_out: bool = False
    # The regular run that an extra one (run_now) stepped in front of: the job goes back
    # to it afterwards, so diagnostics do not pull every job of a host into one phase.
    regular_due: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # What a stateful probe (probes.registry.STATEFUL) remembers between this job's runs.
    state: Any = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.host.name, self.probe)


def prepare_probe_config(name: str, cfg: BaseModel, state_dir: Path) -> BaseModel:
    """Fill in what the engine owns: where stateful probes keep their state."""
    if "state_dir" in type(cfg).model_fields and getattr(cfg, "state_dir", None) is None:
        return cfg.model_copy(update={"state_dir": str(state_dir / "probes")})
    return cfg


def build_jobs(
    config: Config, hosts: dict[str, Host] | None = None, only_host: str | None = None
) -> list[Job]:
    hosts = hosts if hosts is not None else build_hosts(config)
    jobs: list[Job] = []
    for check in config.checks:
        for host_name in check.hosts:
            if only_host and host_name != only_host:
                continue
            for name, cfg in check.probes.items():
                jobs.append(
                    Job(
                        host=hosts[host_name],
                        probe=name,
                        config=prepare_probe_config(name, cfg, config.state_path),
                        state=new_state(name),
                        interval=config.interval(check),
                        timeout=config.timeout(check),
                        for_=config.for_(check),
                        recover_after=config.recover_after(check),
                    )
                )
    return jobs


def new_state(probe: str) -> Any:
    """A fresh state for a job of `probe`, or None when the probe keeps none."""
    stateful = STATEFUL.get(probe)
    return stateful[0]() if stateful else None


def carry_states(old: Iterable[Job], new: Iterable[Job]) -> None:
    """After a reload: a job that runs the same probe on the same host with the same
    config keeps what its predecessor learned (a stateful probe's log position and
    window), instead of starting over from the saved state."""
    kept = {(j.key, j.config.model_dump_json()): j.state for j in old if j.state is not None}
    for job in new:
        state = kept.get((job.key, job.config.model_dump_json()))
        if state is not None:
            job.state = state


def build_hosts(config: Config) -> dict[str, Host]:
    return {name: build_host(name, cfg) for name, cfg in config.hosts.items()}


def run_probe(host: Host, name: str, cfg: BaseModel, state: Any = None) -> Observation:
    """Run one probe (a stateful one with its job's `state`); whatever goes wrong becomes
    an `error` observation, never a raise."""
    start = time.perf_counter()
    try:
        if state is not None:
            obs = STATEFUL[name][1](host, cfg, state)
        else:
            obs = PROBES[name](host, cfg)
    except HostUnreachable as exc:
        obs = error_observation(host, name, exc, time.perf_counter() - start)
    except Exception as exc:  # a probe bug must not take the daemon down with it
        _log_probe_bug(name, host.name, exc)
        obs = error_observation(host, name, exc, time.perf_counter() - start)
    # The detector times `for` and `recover_after` on this, not on the wall clock.
    return obs if obs.mono is not None else replace(obs, mono=time.monotonic())


_bugs_logged: set[tuple[str, str, str]] = set()
_bugs_lock = threading.Lock()


def _log_probe_bug(probe: str, host: str, exc: Exception) -> None:
    """The traceback once per probe, host and kind of failure; a probe failing the same way
    every second must not flood the journal (its error observations still count it)."""
    key = (probe, host, f"{type(exc).__name__}: {exc}"[:200])
    with _bugs_lock:
        first = key not in _bugs_logged
        _bugs_logged.add(key)
    if first:
        log.error("probe %s on %s raised (logged once)", probe, host, exc_info=exc)


def timeout_observation(job: Job) -> Observation:
    return error_observation(
        job.host, job.probe, HostUnreachable(f"probe timed out after {job.timeout:g}s"), job.timeout
    )


def sweep(
    config: Config, only_host: str | None = None, concurrency: int | None = None
) -> list[Observation]:
    """One run of every configured probe (the `recorder probe` command)."""
    jobs = build_jobs(config, only_host=only_host)
    for job in jobs:
        # A one-off sweep must not move the running daemon's saved log offsets.
        if "state_dir" in type(job.config).model_fields:
            job.config = job.config.model_copy(update={"state_dir": None})
    if not jobs:
        return []
    workers = min(concurrency or config.defaults.concurrency, len(jobs))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep")
    try:
        futures = [
            (job, pool.submit(run_probe, job.host, job.probe, job.config, job.state))
            for job in jobs
        ]
        started = time.monotonic()
        results: list[Observation] = []
        for job, fut in futures:
            # Each job's deadline counts from the start of the sweep plus its own timeout:
            # queued behind others it may start later, so allow for the queue.
            remaining = job.timeout * (1 + len(jobs) // workers) - (time.monotonic() - started)
            try:
                results.append(fut.result(timeout=max(remaining, 0.01)))
            except FutureTimeout:
                results.append(timeout_observation(job))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class Scheduler:
    """Runs jobs forever on their intervals and hands each observation to `deliver`."""

    def __init__(
        self,
        jobs: Iterable[Job],
        deliver: Callable[[Observation, Job], None],
        concurrency: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs = list(jobs)
        self.deliver = deliver
        self.clock = clock
        # At most `concurrency` probes run at once. A hung probe holds its worker until it
        # returns, and its job is not started again meanwhile: one worker per job at most.
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe")
        self.concurrency = concurrency
        self._heap: list[tuple[float, int, Job]] = []
        self._inflight: set[Job] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self.last_loop = self.clock()
        now = self.clock()
        # Spread first runs evenly over (at most the first second of) the interval: a
        # thousand targets do not all fire in the same millisecond, and the probes of one
        # outage look at it at different moments, so the first to see it is sooner.
        n = max(len(self.jobs), 1)
        for i, job in enumerate(self.jobs):
            job.next_due = now + i * min(job.interval, 1.0) / n
            heapq.heappush(self._heap, (job.next_due, id(job), job))

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(wait)
        self.pool.shutdown(wait=False, cancel_futures=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and (self.clock() - self.last_loop) < 5.0

    def run_now(self, host_names: Iterable[str]) -> None:
        """Run every job of these hosts as soon as possible (diagnostics on incident open)."""
        wanted = set(host_names)
        with self._lock:
            now = self.clock()
            for job in self.jobs:
                if job.host.name in wanted and job not in self._inflight:
                    if job.regular_due is None and job.next_due > now:
                        job.regular_due = job.next_due
                    job.next_due = now
                    heapq.heappush(self._heap, (now, id(job), job))
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            self.last_loop = now
            self._start_due(now)
            self._expire(now)
            with self._lock:
                next_due = self._heap[0][0] if self._heap else now + 1.0
            with self._lock:
                deadlines = [j.deadline for j in self._inflight]
            wake_at = min([next_due, *deadlines, now + 1.0])
            self._wake.wait(max(0.0, wake_at - self.clock()))
            self._wake.clear()

    def _start_due(self, now: float) -> None:
        while True:
            with self._lock:
                if not self._heap or self._heap[0][0] > now:
                    return
                due, _, job = heapq.heappop(self._heap)
                if due != job.next_due or job in self._inflight:
                    continue  # a stale heap entry (rescheduled by run_now)
                self._inflight.add(job)
            job.started, job.deadline, job.timed_out = now, now + job.timeout, False
            try:
                job.future = self.pool.submit(run_probe, job.host, job.probe, job.config, job.state)
            except RuntimeError:
                return  # shutting down
            job.future.add_done_callback(functools.partial(self._done, job))

    def _done(self, job: Job, fut: Future[Observation]) -> None:
        with self._lock:
            self._inflight.discard(job)
            now = self.clock()
            if job.regular_due is not None and job.regular_due > now:
                job.next_due = job.regular_due  # back to its own phase after an extra run
            else:
                # From when the run was due, not when the loop woke to start it: a late
                # wake-up (a loaded machine) would otherwise shift the job's phase for good,
                # a little more each time. next_due still holds this run's due time, since
                # run_now leaves jobs in flight alone.
                job.next_due = max(job.next_due + job.interval, now)
            job.regular_due = None
            heapq.heappush(self._heap, (job.next_due, id(job), job))
            late = job.timed_out
        self._wake.set()
        if late or fut.cancelled():
            return  # its timeout was already reported
        try:
            obs = fut.result()
        except Exception as exc:  # run_probe catches everything; belt and braces
            obs = error_observation(job.host, job.probe, exc)
        self.deliver(obs, job)

    def _expire(self, now: float) -> None:
        """A run past its deadline is reported as a timeout, and again every interval while
        it stays stuck, so a hung host keeps counting towards `unreachable` instead of
        going silent."""
        expired = []
        with self._lock:
            for job in self._inflight:
                if now >= job.deadline:
                    expired.append((job, job.timed_out))
                    job.timed_out = True
                    job.deadline = now + job.interval
        for job, again in expired:
            if not again:
                log.warning("%s on %s timed out after %gs", job.probe, job.host.name, job.timeout)
            self.deliver(timeout_observation(job), job)
