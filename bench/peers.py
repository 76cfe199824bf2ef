"""Detection side by side: the recorder and Prometheus + blackbox_exporter + Alertmanager,
measured in one run on the same lab faults.

    python bench/peers.py                  # every lab fault; peer defaults on 3 faults x 1 run
    python bench/peers.py --default-runs 5 # ... x 5 runs (each takes up to 5 minutes)
    python bench/peers.py --smoke          # nginx-down once, no peer-defaults run

One lab, steady traffic from many loopback clients (bench/detection.py's SteadyTraffic), and
two `recorder run` children watching it with their own stores: the lab's recorder.yml
(interval 1s, `for: 0s`) and the same file at the recorder's defaults (no interval, no
`for`: 10 s and 0 s). Per run, fresh peer stacks (Debian's programs, started by
recorder/lab/peers.py on loopback, stopped by pid):

- tight: blackbox_exporter probing what users hit (lb-01's URL), Prometheus scraping it and
  evaluating a `probe_success == 0` rule with `for: 0s` every 1 s, Alertmanager with
  group_wait 0s and group_interval 1s;
- defaults (on --default-faults only): the same at the documented defaults, scrape and
  evaluation 1m, group_wait 30s, blackbox's own timeout. Fresh each run, so a group left
  from the previous run cannot hold the alert for group_interval (5m).

Each stack sends to its own loopback webhook receiver. The clock starts when
`Lab.break_()` returns (what `recorder lab break` does); it stops for the recorder when a
new outage incident shows in its store (`Store.list()`, what `incidents list` prints) and
for a peer when a firing notification reaches its receiver. A peer that has sent nothing
within its bound did not detect the fault: the probe address never failed.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml
from detection import LOGGED_5XX, SPIKE_SECONDS, SteadyTraffic

POLL = 0.05
# The faults the peer defaults run on: the two a site probe can see, and a partial 5xx.
DEFAULT_FAULTS = ("nginx-down", "missing-symlink", "backend-5xx")
# The worked-out figures of BENCHMARKS.md, printed as the cross-check (median, worst).
WORKED_OUT = {
    "Prometheus + blackbox + Alertmanager defaults": (90.0, 150.0),
    "Gatus defaults (not packaged in Debian: worked out only)": (150.0, 180.0),
}
COLUMNS = ("recorder_default", "recorder_1s", "peer_tight", "peer_default")
TITLES = {
    "recorder_default": "recorder defaults (10s)",
    "recorder_1s": "recorder 1s",
    "peer_tight": "Prometheus stack 1s",
    "peer_default": "Prometheus stack defaults",
}


class Receiver:
    """A loopback webhook receiver: when each firing notification arrived."""

    def __init__(self) -> None:
        self.firing: list[float] = []
        arrivals = self.firing

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if json.loads(body or b"{}").get("status") == "firing":
                    arrivals.append(time.monotonic())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first_after(self, t0: float) -> float | None:
        return next((t for t in self.firing if t >= t0), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Recorder:
    """`recorder run` on a copy of the lab's config, with its own store and port."""

    def __init__(self, name: str, lab_config: Path, directory: Path, defaults: bool) -> None:
        from recorder.config import load_config
        from recorder.store import Store

        data = yaml.safe_load(lab_config.read_text())
        if defaults:
            for key in ("interval", "for"):
                data["defaults"].pop(key, None)
        data["state_dir"] = str(directory / f"{name}-state")
        (port,) = bl.free_ports(1)
        data["listen"] = f"127.0.0.1:{port}"
        path = directory / f"{name}.yml"
        path.write_text(yaml.safe_dump(data))
        config = load_config(path)
        self.name = name
        self.daemon = bl.Daemon(path, config.listen, directory / f"{name}.log").start()
        self.store = Store(config.state_path)

    def outages(self) -> list[dict[str, Any]]:
        return [i.to_json() for i in self.store.list() if i.to_json()["severity"] == "outage"]

    def max_id(self) -> int:
        return max((i.id for i in self.store.list()), default=0)

    def opened_after(self, after_id: int) -> bool:
        self.daemon.check_alive()
        return any(i["id"] > after_id for i in self.outages())

    def all_resolved(self) -> bool:
        return not any(i["status"] == "open" for i in self.outages())

    def close(self) -> None:
        self.daemon.stop()
        self.store.close()


def peer_stack(
    cleanup: ExitStack, directory: Path, site: str, receiver: Receiver, tight: bool
) -> Any:
    """blackbox_exporter, Alertmanager and Prometheus, fresh; returns Prometheus once it
    has a first probe of the site (so the break does not land before the first scrape)."""
    from recorder.lab import peers

    directory.mkdir(parents=True)
    route: dict[str, Any] = {"receiver": "hook", "group_by": ["alertname"]}
    if tight:
        route.update(group_wait="0s", group_interval="1s", repeat_interval="1h")
    am_config = {
        "route": route,
        "receivers": [{"name": "hook", "webhook_configs": [{"url": receiver.url}]}],
    }
    blackbox = peers.start_blackbox(directory, "1s" if tight else None)
    cleanup.callback(blackbox.stop)
    am = peers.start_alertmanager(directory, "alertmanager", am_config)
    cleanup.callback(am.stop)
    rules = directory / "rules.yml"
    rules.write_text(yaml.safe_dump(peers.site_down_rules("0s")))
    config = peers.prometheus_config(
        "1s" if tight else "1m", [rules], [am], [peers.blackbox_job(blackbox, site, "lb-01")]
    )
    prometheus = peers.start_prometheus(directory, "prometheus", config)
    cleanup.callback(prometheus.stop)
    blackbox.ready("/metrics")
    am.ready("/-/ready")
    prometheus.ready("/-/ready")
    deadline = time.monotonic() + (10 if tight else 90)
    while time.monotonic() < deadline:
        result = prometheus.get("/api/v1/query", query="probe_success")["data"]["result"]
        if result:
            if result[0]["value"][1] != "1":
                raise bl.BenchError(f"the peer's first probe of {site} failed: {result}")
            return prometheus
        time.sleep(0.2)
    raise bl.BenchError("the peer's Prometheus scraped no probe in time")


def wait_quiet(recorders: list[Recorder], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(r.all_resolved() for r in recorders):
        if time.monotonic() > deadline:
            raise bl.BenchError("an earlier outage incident is still open")
        time.sleep(0.2)


def one_run(
    fault: str,
    lab: Any,
    recorders: list[Recorder],
    directory: Path,
    with_defaults: bool,
    args: Any,
    rng: random.Random,
) -> dict[str, Any]:
    run: dict[str, Any] = {"fault": fault}
    wait_quiet(recorders, args.resolve_timeout)
    with ExitStack() as cleanup:
        tight = Receiver()
        cleanup.callback(tight.close)
        peer_stack(cleanup, directory / "tight", lab.url, tight, tight=True)
        default = Receiver()
        cleanup.callback(default.close)
        if with_defaults:
            peer_stack(cleanup, directory / "default", lab.url, default, tight=False)
            # Prometheus scrapes at a fixed phase of the minute: break anywhere in it.
            time.sleep(rng.uniform(0, 60))
        time.sleep(rng.uniform(0, 1))
        before = {r.name: r.max_id() for r in recorders}
        params: dict[str, Any] = {"seconds": SPIKE_SECONDS} if fault == "traffic-spike" else {}
        lab.break_(fault, **params)
        t0 = time.monotonic()
        checks: dict[str, tuple[float, Callable[[], float | None]]] = {}
        for r in recorders:

            def seen(r: Recorder = r) -> float | None:
                return time.monotonic() if r.opened_after(before[r.name]) else None

            checks[r.name] = (args.detect_timeout, seen)
        checks["peer_tight"] = (args.tight_timeout, lambda: tight.first_after(t0))
        if with_defaults:
            checks["peer_default"] = (args.default_timeout, lambda: default.first_after(t0))
        try:
            pending = dict(checks)
            while pending:
                now = time.monotonic()
                for name, (bound, check) in list(pending.items()):
                    at = check()
                    if at is not None:
                        run[name] = round(at - t0, 3)
                        del pending[name]
                    elif now - t0 > bound:
                        run[name] = math.inf
                        run[f"{name}_bound"] = bound
                        del pending[name]
                time.sleep(POLL)
            time.sleep(max(0.0, args.hold - (time.monotonic() - t0)))
        finally:
            lab.fix(fault)
    if fault in LOGGED_5XX:
        # The 5xx lines stay in error_rate's window: let them drain before the next run.
        time.sleep(args.drain)
    return run


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return "not seen" if math.isinf(value) else f"{value:.2f} s"


def summarize(runs: list[dict[str, Any]], faults: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fault in [*faults, "all"]:
        mine = [r for r in runs if fault in ("all", r["fault"])]
        row: dict[str, Any] = {}
        for col in COLUMNS:
            values = [r[col] for r in mine if col in r]
            if not values:
                continue
            seen = [v for v in values if not math.isinf(v)]
            row[col] = {
                "detected": f"{len(seen)}/{len(values)}",
                "median": bl.median(seen) if seen else None,
                "worst": max(values),
                "bound": max((r.get(f"{col}_bound", 0) for r in mine), default=0),
            }
        out[fault] = row
    return out


def print_summary(summary: dict[str, dict[str, Any]]) -> None:
    header = ["fault"] + [f"{TITLES[c]} (median / worst)" for c in COLUMNS]
    rows = []
    for fault, row in summary.items():
        cells = [fault]
        for col in COLUMNS:
            s = row.get(col)
            if s is None:
                cells.append("-")
            elif s["median"] is None:
                cells.append(f"not detected in {s['bound']:g} s ({s['detected']})")
            else:
                cells.append(f"{fmt(s['median'])} / {fmt(s['worst'])} ({s['detected']})")
        rows.append(cells)
    print(bl.table(header, rows))
    print("worked out from documented defaults (cross-check, median / worst):")
    for name, (median, worst) in WORKED_OUT.items():
        print(f"  {name}: {median:g} s / {worst:g} s")


def main(argv: list[str] | None = None) -> int:
    bl.stop_on_sigterm()
    p = bl.parser("Detection side by side: the recorder and Prometheus + blackbox + Alertmanager.")
    p.add_argument("--faults", help="comma-separated lab faults (default: all; smoke: nginx-down)")
    p.add_argument(
        "--default-runs",
        type=int,
        help="runs per fault of the peer stack at its defaults (default 1; smoke 0)",
    )
    p.add_argument("--default-faults", default=",".join(DEFAULT_FAULTS))
    p.add_argument("--clients", type=int, default=40, help="lab traffic clients")
    p.add_argument("--rps", type=float, default=20.0, help="lab traffic requests per second")
    p.add_argument("--hold", type=float, default=5.0, help="least seconds from break to fix")
    p.add_argument("--warmup", type=float, help="traffic before the first run (default 40 s)")
    p.add_argument("--drain", type=float, default=35.0, help="wait after a 5xx fault")
    p.add_argument("--detect-timeout", type=float, default=40.0, help="recorder's bound")
    p.add_argument("--tight-timeout", type=float, default=30.0, help="peer 1s stack's bound")
    p.add_argument("--default-timeout", type=float, default=240.0, help="peer defaults' bound")
    p.add_argument("--resolve-timeout", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=19)
    args = p.parse_args(argv)
    from recorder.lab.core import Lab
    from recorder.lab.faults import FAULTS

    if args.faults:
        faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    elif args.smoke:
        faults = ["nginx-down"]
    else:
        # The faults seen in the access log last: traffic has run for minutes by then, so
        # error_rate has the history a sudden rise is compared with.
        faults = [f for f in FAULTS if f not in LOGGED_5XX] + list(LOGGED_5XX)
    unknown = [f for f in faults if f not in FAULTS]
    if unknown:
        print(f"peers: unknown faults {unknown}; valid: {', '.join(FAULTS)}")
        return 2
    default_runs = args.default_runs if args.default_runs is not None else (0 if args.smoke else 1)
    default_faults = [f.strip() for f in args.default_faults.split(",") if f.strip()]
    warmup = args.warmup if args.warmup is not None else (2.0 if args.smoke else 40.0)
    print(bl.machine_line())
    print(
        f"faults: {', '.join(faults)}; peer defaults on {', '.join(default_faults)} x "
        f"{default_runs} run(s); traffic {args.clients} clients at {args.rps:g} req/s"
    )
    rng = random.Random(args.seed)
    directory = bl.scratch_dir("peers")
    runs: list[dict[str, Any]] = []
    failed = True
    try:
        with ExitStack() as cleanup:
            lab = Lab(directory / "lab")
            lab.up()
            cleanup.callback(lab.down)
            recorders = []
            for name, defaults in (("recorder_default", True), ("recorder_1s", False)):
                r = Recorder(name, lab.config_path, directory, defaults)
                cleanup.callback(r.close)
                recorders.append(r)
            traffic = SteadyTraffic(lab.url, args.clients, args.rps).start()
            cleanup.callback(traffic.close)
            time.sleep(warmup)
            n = 0
            for fault in faults:
                rounds = max(1, default_runs if fault in default_faults else 1)
                for i in range(rounds):
                    n += 1
                    with_defaults = fault in default_faults and i < default_runs
                    run = one_run(
                        fault, lab, recorders, directory / f"run-{n}", with_defaults, args, rng
                    )
                    runs.append(run)
                    print(
                        f"  {fault:17} "
                        + "  ".join(f"{TITLES[c]}: {fmt(run.get(c))}" for c in COLUMNS),
                        flush=True,
                    )
        failed = False
    finally:
        bl.remove_scratch(directory, keep=failed)
    summary = summarize(runs, faults)
    print_summary(summary)
    path = bl.save_results(
        args.out,
        "peers",
        {
            "smoke": args.smoke,
            "default_runs": default_runs,
            "runs": [{k: (None if v == math.inf else v) for k, v in r.items()} for r in runs],
            "summary": summary,
            "worked_out": WORKED_OUT,
        },
    )
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
