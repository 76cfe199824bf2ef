"""The web pages' render time with a full store: 1,000 incidents (half of them closed,
with their final postmortems), each with the timeline the engine writes (a failing check,
the checks that passed on three hosts, candidates, recovery, a person's note); and
`/status` with 1,000 targets and 30 days of probe history, whose disk cost per target per
day it measures.

    python bench/pages.py            # 1,000 incidents, 1,000 targets; 200 requests per page
    python bench/pages.py --smoke    # 20 incidents, 12 targets, 3 days; 10 requests per page

The daemon's own HTTP server (recorder.api.serve, waitress) serves the store; one client
asks for each page in turn, one request at a time, on a fresh connection, as a person's
browser would. The target (issue #18) is a p99 under 100 ms per page.

The pages are measured after `recorder.daemon.settle_heap()` (gc.freeze), as the daemon
serves them after start-up; two peers, measured first in the same run, show them without
it. Each row counts the collector's full passes among its requests and the longest.
"""

from __future__ import annotations

import gc
import http.client
import os
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import benchlib as bl
from prometheus_client import CollectorRegistry

from probes.base import Observation, Status
from recorder.api import ApiServer, make_app, serve
from recorder.config import Config, parse_config
from recorder.daemon import settle_heap
from recorder.history import History
from recorder.model import Affected, Cause, Incident, Task, TimelineEntry
from recorder.postmortem.close import atomic_write, final_path
from recorder.postmortem.draft import render_draft
from recorder.store import Store, ensure_private_dir
from recorder.web.pages import STATUS_PAGE_HOSTS

TARGET_MS = 100.0
HOSTS = ("lb-01", "web-01", "web-02")
PROBES = ("http", "sites", "config", "process", "error_rate")


class Engine:
    def __init__(self, config: Config, store: Store, history: History | None = None) -> None:
        self.config, self.store = config, store
        self.metrics_registry = CollectorRegistry()
        self.history = history

    def health(self) -> tuple[bool, str]:
        return True, "ok"

    def token(self) -> str | None:
        return None

    def read_token(self) -> str | None:
        return None

    def submit_alerts(self, alerts: list[Any]) -> list[int | None]:
        return []


def config_for(state: Path) -> Config:
    return parse_config(
        {
            "timezone": "Africa/Nairobi",
            "state_dir": str(state),
            "services": {"web": {"entrypoints": ["lb-01"], "escalation": "platform-team"}},
            "hosts": {
                h: {"local": {"prefix": "/"}, "role": "lb" if h == "lb-01" else "web"}
                for h in HOSTS
            },
        }
    )


def incident(n: int, start: datetime) -> Incident:
    at = start + timedelta(minutes=37 * n)
    end = at + timedelta(minutes=5 + n % 40)
    entries = [
        TimelineEntry(
            at, "impact-start", "Harm began: sites-available/example is not linked", "sites"
        ),
        TimelineEntry(
            at + timedelta(seconds=2), "detection", "Incident opened by the recorder", "sites"
        ),
    ]
    for host in HOSTS:
        for probe in PROBES:
            entries.append(
                TimelineEntry(
                    at + timedelta(seconds=3),
                    "action",
                    f"Checked {probe} on {host}: {probe} fine on {host} (ruled out)",
                    probe,
                )
            )
    entries += [
        TimelineEntry(
            at + timedelta(seconds=4),
            "note",
            "Root-cause candidates: missing-symlink (88%)",
            "recorder",
        ),
        TimelineEntry(
            at + timedelta(minutes=3), "action", f"restarted nginx on lb-01 (#{n})", "cli"
        ),
        TimelineEntry(
            end, "resolution", "Every signal healthy again; incident resolved", "recorder"
        ),
    ]
    for i, e in enumerate(entries):
        e.key = f"{n}-{i}"
    return Incident(
        id=0,
        status="resolved",
        title="web: A site is not enabled (its sites-enabled symlink is missing) (lb-01)",
        service="web",
        fault="missing-symlink",
        started_at=at,
        detected_at=at + timedelta(seconds=2),
        resolved_at=end,
        hosts=["lb-01"],
        affected=Affected(1.0, "entrypoint-unreachable", "lb-01 answers nothing: every client"),
        root_causes=[
            Cause("missing-symlink", 0.88, ["lb-01: sites-available/example is not linked"]),
            Cause("port-closed", 0.39, ["lb-01: connection refused"]),
        ],
        timeline=entries,
    )


def fill(store: Store, config: Config, count: int) -> list[int]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    for n in range(count):
        made = store.create_incident(incident(n, start))
        ids.append(made.id)
        if n % 2 == 0:  # half of them closed, with the document `close` would write
            said = {
                "root_cause": "A cleanup script removed the link",
                "resolution": "Recreated the link and reloaded nginx",
                "misleading": ["none"],
                "escalated_to": "platform-team",
                "tasks": ["Declare the site enabled in the role"],
            }
            full = store.get(made.id)
            assert full is not None
            text = render_draft(full, config, "md", overrides=said, final=True)
            path = final_path(config, made.id)
            ensure_private_dir(path.parent)
            atomic_write(path, text)
            store.close_incident(
                made.id,
                {**said, "path": str(path)},
                [Task(t) for t in said["tasks"]],
                full.resolved_at or start,
            )
    return ids


STATUS_PROBES = ("http", "sites", "config", "process")


def fleet_config(state: Path, targets: int) -> Config:
    """`targets` checks: hosts of four probes each."""
    hosts = [f"web-{i:04d}" for i in range(max(1, targets // len(STATUS_PROBES)))]
    return parse_config(
        {
            "timezone": "Africa/Nairobi",
            "state_dir": str(state),
            "services": {"web": {"hosts": hosts}},
            "hosts": {h: {"local": {"prefix": "/"}} for h in hosts},
            "checks": [
                {
                    "hosts": hosts,
                    "probes": {
                        "http": {"url": "http://{address}/"},
                        **{p: {} for p in STATUS_PROBES[1:]},
                    },
                }
            ],
        }
    )


def fill_history(history: History, config: Config, days: int, now: datetime) -> dict[str, Any]:
    """`days` of hourly samples for every target (how often a probe ran changes counts,
    not rows), one failing hour in 50; then the file size per target per day."""
    targets = [(h, p) for h in config.hosts for _c, p, _m in config.checks_for(h)]
    start = now - timedelta(days=days)
    for hour in range(days * 24):
        at = start + timedelta(hours=hour)
        for n, (host, probe) in enumerate(targets):
            status = Status.FAIL if (hour + n) % 50 == 0 else Status.OK
            history.add(Observation(host, probe, status, f"{probe} {status}", at=at))
        if hour % 24 == 23:
            history.flush(at)
    history.flush(now)
    history.refresh(now)
    history.close()  # checkpoint the WAL: the size is the database's own
    size = history.path.stat().st_size
    return {
        "targets": len(targets),
        "days": days,
        "bytes": size,
        "bytes_per_target_per_day": size / len(targets) / days,
    }


def timed(port: int, path: str) -> float:
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or not body:
        raise bl.BenchError(f"{path} answered {response.status}")
    return (time.perf_counter() - began) * 1000


class Collections:
    """The cyclic collector's full (generation 2) passes while it is on, and the longest:
    over a large heap they are what a page's tail waits for."""

    def __init__(self) -> None:
        self.full = 0
        self.longest_ms = 0.0
        self._began = 0.0

    def __enter__(self) -> Collections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.full += 1
            self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._began) * 1000)


def measure(port: int, path: str | Callable[[], str], requests: int) -> dict[str, float]:
    """`requests` timed GETs of `path` (or of what it gives each time) after one warm-up
    (templates compiled, caches filled): p50, p99, CPU per request and the full
    collections among them."""
    if isinstance(path, str):
        fixed = path
        path = lambda: fixed  # noqa: E731
    timed(port, path())
    cpu = time.process_time()
    with Collections() as collections:
        latencies = [timed(port, path()) for _ in range(requests)]
    # CPU per request (server and client: one process) does not grow with what else the
    # machine runs, unlike the wall-clock tail.
    return {
        "p50_ms": bl.percentile(latencies, 50),
        "p99_ms": bl.percentile(latencies, 99),
        "cpu_ms_per_request": (time.process_time() - cpu) * 1000 / requests,
        "requests": requests,
        "gen2_collections": collections.full,
        "gen2_longest_ms": collections.longest_ms,
    }


def row(name: str, result: dict[str, float]) -> list[str]:
    return [
        name,
        f"{result['p50_ms']:.1f}",
        f"{result['p99_ms']:.1f}",
        f"{result['cpu_ms_per_request']:.1f}",
        f"{result['gen2_collections']:.0f} ({result['gen2_longest_ms']:.0f} ms)",
        bl.verdict(result["p99_ms"] < TARGET_MS),
    ]


HEADER = [
    "page",
    "p50 ms",
    "p99 ms",
    "CPU ms/req",
    "gen-2 GCs (longest)",
    f"p99 < {TARGET_MS:g} ms",
]


def main() -> int:
    args = bl.parser(__doc__.splitlines()[0]).parse_args()
    count, requests = (20, 10) if args.smoke else (1000, 200)
    scratch = bl.scratch_dir("pages")
    servers: list[ApiServer] = []
    stores: list[Store] = []
    try:
        config = config_for(scratch / "state")
        store = Store(config.state_path)
        stores.append(store)
        began = time.perf_counter()
        ids = fill(store, config, count)
        print(
            f"store: {count} incidents ({(count + 1) // 2} closed), "
            f"filled in {time.perf_counter() - began:.1f} s"
        )
        # /status with the fleet and its history.
        targets, days = (12, 3) if args.smoke else (1000, 30)
        fleet = fleet_config(scratch / "fleet", targets)
        history = History(fleet.state_path, days=30)
        began = time.perf_counter()
        disk = fill_history(history, fleet, days, datetime.now(UTC))
        print(
            f"history: {disk['targets']} targets x {days} days in {disk['bytes'] / 1e6:.1f} MB, "
            f"{disk['bytes_per_target_per_day']:.0f} bytes per target per day "
            f"(filled in {time.perf_counter() - began:.1f} s)"
        )
        fleet_store = Store(fleet.state_path)
        stores.append(fleet_store)
        servers.append(serve("127.0.0.1:0", make_app(Engine(config, store))))
        servers.append(serve("127.0.0.1:0", make_app(Engine(fleet, fleet_store, history))))
        port, fleet_port = servers[0].port, servers[1].port
        rnd = random.Random(18)
        closed = [i for n, i in enumerate(ids) if n % 2 == 0]
        open_ones = [i for n, i in enumerate(ids) if n % 2 == 1]
        hosts = len(fleet.hosts)
        last = -(-hosts // STATUS_PAGE_HOSTS)
        status = f"/status ({disk['targets']} targets, {hosts} hosts)"
        pages: dict[str, tuple[int, str | Callable[[], str]]] = {
            "/ (incidents)": (port, "/"),
            "/?status=resolved": (port, "/?status=resolved"),
            "/incidents/ID (draft)": (
                port,
                lambda: f"/incidents/{rnd.choice(open_ones or closed)}",
            ),
            "/incidents/ID (closed)": (port, lambda: f"/incidents/{rnd.choice(closed)}"),
            "/postmortems": (port, "/postmortems"),
            "/postmortems/ID": (port, lambda: f"/postmortems/{rnd.choice(closed)}"),
            status: (fleet_port, "/status"),
        }
        if last > 1:
            pages[f"/status?page={last} (the last)"] = (fleet_port, f"/status?page={last}")
        rows, results = [], {}
        # The peers: two pages as a process serves them with its start-up heap still
        # walked by every full collection; then what the daemon does after start-up.
        for name in ("/ (incidents)", status):
            peer = f"{name}, no gc.freeze"
            results[peer] = measure(*pages[name], requests)
            rows.append(row(peer, results[peer]))
        settle_heap()
        for name, (at, path) in pages.items():
            results[name] = measure(at, path, requests)
            rows.append(row(name, results[name]))
        print(bl.machine_line())
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(bl.table(HEADER, rows))
        bl.save_results(
            args.out,
            "pages",
            {
                "incidents": count,
                "history": disk,
                "pages": results,
                "target_ms": TARGET_MS,
                "smoke": args.smoke,
            },
        )
    finally:
        for server in servers:
            server.close()
        for each in stores:
            each.close()
        bl.remove_scratch(scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
