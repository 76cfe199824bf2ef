"""Detection latency and accuracy against the fault lab, with the daemon running for real.

    python bench/detection.py                 # every lab fault, 10 runs each, 10-min healthy run
    python bench/detection.py --smoke         # 2 faults, 1 run each, 20-s healthy run

For each lab fault: a fresh lab (`Lab(dir).up()`, whose recorder.yml has interval 1s,
`for: 0s`, recover_after 5s) and `recorder --config lab/recorder.yml run` as a child
process, steady traffic from many loopback clients (`recorder.lab.traffic`), then per run:

1. `Lab.break_(FAULT)`; the clock starts when it returns (as `recorder lab break` would);
2. the store is polled every 50 ms through `Store.list()`, the function behind
   `recorder incidents list --json`, until a new incident appears: that is the latency.
   One real `recorder incidents list --json` then confirms it is visible there (its own
   run time, mostly interpreter start-up, is reported apart);
3. traffic runs on for `--hold` seconds, then `Lab.fix(FAULT)`; the traffic report from
   the break to the fix is the truth of the affected share (clients that got a 5xx or no
   answer, over clients seen; for traffic-spike the burst's own clients are added);
4. the incident must resolve; its top root cause is compared with the fault's kind (as the
   lab names it) and its affected share with the truth.

Faults that leave 5xx lines in the access log wait out the error_rate window before their
next run, so a run never inherits the previous run's errors. bad-deploy runs last: its
deploy events stay "recent" (15 minutes) and would otherwise colour the runs after it.

Then a healthy run: a fresh lab and daemon, steady traffic, no fault: every incident opened
is a false one.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchlib as bl

POLL = 0.05
# Quick to break and to resolve (a 5xx fault's window takes half a minute to drain).
SMOKE_FAULTS = ("nginx-down", "config-syntax")
# Faults whose errors land in the access log (and so in error_rate's window).
LOGGED_5XX = ("backend-5xx", "bad-deploy", "traffic-spike")
LOGGED_WARMUP = 180.0  # seconds of normal traffic before their first run
SPIKE_SECONDS = 8.0


class SteadyTraffic:
    """Continuous lab traffic in segments: `cut()` ends the current segment, returns its
    report and starts the next at once, so users never stop arriving."""

    def __init__(self, url: str, clients: int, rps: float) -> None:
        from recorder.lab.traffic import traffic_to

        self._traffic_to = traffic_to
        self.url, self.clients, self.rps = url, clients, rps
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._reports: list[dict[str, Any]] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="steady-traffic", daemon=True)
        self.error: str | None = None

    def start(self) -> SteadyTraffic:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                report = self._traffic_to(
                    self.url, self.clients, self.rps, 3600.0, timeout=10.0, stop=self._cut
                )
            except Exception as exc:  # report it to the main thread instead of dying silently
                self.error = f"{type(exc).__name__}: {exc}"
                report = {}
            with self._ready:
                self._reports.append(report)
                self._ready.notify_all()
            if not self._closed.is_set():
                self._cut.clear()

    def cut(self, timeout: float = 30.0) -> dict[str, Any]:
        with self._ready:
            seen = len(self._reports)
            self._cut.set()
            if not self._ready.wait_for(lambda: len(self._reports) > seen, timeout):
                raise bl.BenchError("lab traffic did not stop in time")
            return self._reports[seen]

    def close(self) -> None:
        self._closed.set()
        self._cut.set()
        self._thread.join(30.0)


class Session:
    """A fresh lab with the daemon watching it and steady traffic."""

    def __init__(self, name: str, clients: int, rps: float) -> None:
        from recorder.lab.core import Lab

        self.dir = bl.scratch_dir(f"detection-{name}")
        self.lab = Lab(self.dir / "lab")
        self.clients, self.rps = clients, rps
        self.daemon: bl.Daemon | None = None
        self.traffic: SteadyTraffic | None = None
        self.store: Any = None

    def __enter__(self) -> Session:
        from recorder.config import load_config
        from recorder.store import Store

        try:
            status = self.lab.up()
            config_path = Path(status["config"])
            config = load_config(config_path)
            self.config_path = config_path
            self.window = max(
                float(getattr(cfg, "window", 0.0))
                for check in config.checks
                for name, cfg in check.probes.items()
                if name == "error_rate"
            )
            self.daemon = bl.Daemon(config_path, config.listen, self.dir / "daemon.log").start()
            self.store = Store(config.state_path)
            self.traffic = SteadyTraffic(self.lab.url, self.clients, self.rps).start()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)  # keeps the directory with the daemon's log
            raise
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if self.traffic is not None:
            self.traffic.close()
        if self.daemon is not None:
            self.daemon.stop()
        try:
            self.lab.down()
        except Exception as err:  # report, but never hide the original error
            print(f"  warning: lab down: {err}", file=sys.stderr)
        if self.store is not None:
            self.store.close()
        bl.remove_scratch(self.dir, keep=exc_type is not None)

    # ---- reading incidents the way `recorder incidents list --json` does ----------------------

    def incidents(self) -> list[dict[str, Any]]:
        return [i.to_json() for i in self.store.list()]

    def max_id(self) -> int:
        return max((i["id"] for i in self.incidents()), default=0)

    def wait_new(self, after_id: int, timeout: float) -> dict[str, Any] | None:
        """The first outage incident opened after `after_id`. Incidents of severity
        `monitoring` (we could not look) are not an outage being detected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = [i for i in self.incidents() if i["id"] > after_id and i["severity"] == "outage"]
            if new:
                return min(new, key=lambda i: i["id"])
            assert self.daemon is not None
            self.daemon.check_alive()
            time.sleep(POLL)
        return None

    def wait_all_resolved(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(
                i["status"] == "open" and i["severity"] == "outage" for i in self.incidents()
            ):
                return True
            time.sleep(0.2)
        return False

    def incident(self, incident_id: int) -> dict[str, Any]:
        found = self.store.get(incident_id)
        return dict(found.to_json()) if found is not None else {}

    def cli_list(self) -> tuple[float, list[dict[str, Any]]]:
        m = bl.run_measured(
            [bl.RECORDER, "--config", str(self.config_path), "incidents", "list", "--json"],
            timeout=60.0,
        ).check()
        return m.seconds, list(json.loads(m.stdout))


def truth_share(report: dict[str, Any], spike: dict[str, Any] | None) -> float | None:
    clients = int(report.get("clients") or 0)
    affected = int(report.get("clients_affected") or 0)
    if spike:
        clients += int(spike.get("clients") or 0)
        affected += int(spike.get("clients_affected") or 0)
    return round(affected / clients, 4) if clients else None


def one_run(
    s: Session, fault: str, hold: float, detect_timeout: float, resolve_timeout: float
) -> dict[str, Any]:
    from recorder.lab.state import LabError

    assert s.traffic is not None
    run: dict[str, Any] = {"fault": fault}
    # A new fault would join a still-open incident of the service instead of opening one.
    if not s.wait_all_resolved(resolve_timeout):
        run["error"] = "an earlier outage incident is still open"
        return run
    before = s.max_id()
    s.traffic.cut()  # the report of the quiet stretch before the break is not the truth
    params: dict[str, Any] = {"seconds": SPIKE_SECONDS} if fault == "traffic-spike" else {}
    try:
        truth = s.lab.break_(fault, **params)
    except LabError as exc:
        run["error"] = f"break failed: {exc}"
        s.traffic.cut()
        return run
    broke = time.monotonic()
    broke_wall = time.time()
    run["expected"] = truth["kind"]
    found = s.wait_new(before, detect_timeout)
    if found is None:
        run["detected"] = False
        run["latency"] = math.inf
    else:
        run["detected"] = True
        run["latency"] = round(time.monotonic() - broke, 3)
        detected_at = found.get("detected_at")
        if detected_at:
            from datetime import datetime

            run["latency_by_detected_at"] = round(
                datetime.fromisoformat(detected_at).timestamp() - broke_wall, 3
            )
        cli_seconds, listed = s.cli_list()
        run["cli_seconds"] = round(cli_seconds, 3)
        run["cli_visible"] = any(i["id"] == found["id"] for i in listed)
        run["incident"] = found["id"]
    # Let users keep arriving (and failing) for a while, as during a real outage.
    remaining = hold - (time.monotonic() - broke)
    if remaining > 0:
        time.sleep(remaining)
    spike_report = None
    if fault == "traffic-spike" and truth.get("report"):
        # Let the burst finish and write its report (its clients are part of the truth).
        report_path = Path(truth["report"])
        deadline = time.monotonic() + SPIKE_SECONDS + 15
        while not report_path.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if report_path.exists():
            time.sleep(0.2)
            spike_report = json.loads(report_path.read_text(encoding="utf-8"))
    try:
        s.lab.fix(fault)
    except LabError as exc:
        run["fix_error"] = str(exc)
    fixed = time.monotonic()
    report = s.traffic.cut()
    run["truth_affected"] = truth_share(report, spike_report)
    run["traffic"] = {
        "requests": report.get("requests"),
        "clients": report.get("clients"),
        "status_classes": report.get("status_classes"),
    }
    if found is not None:
        deadline = fixed + resolve_timeout
        final: dict[str, Any] = {}
        while time.monotonic() < deadline:
            final = s.incident(found["id"])
            if final.get("resolved_at"):
                break
            time.sleep(0.2)
        run["resolved"] = bool(final.get("resolved_at"))
        run["resolve_seconds"] = round(time.monotonic() - fixed, 2) if run["resolved"] else None
        causes = final.get("root_causes") or []
        run["top_cause"] = causes[0]["fault"] if causes else final.get("fault")
        run["causes"] = [(c["fault"], c["confidence"]) for c in causes[:3]]
        run["correct"] = run["top_cause"] == truth["kind"]
        affected = final.get("affected") or {}
        run["affected"] = affected.get("ratio")
        run["affected_method"] = affected.get("method")
        run["affected_peak"] = affected.get("peak")
        if run["affected"] is not None and run["truth_affected"] is not None:
            run["affected_error"] = round(abs(run["affected"] - run["truth_affected"]), 4)
        extra = [
            i
            for i in s.incidents()
            if i["id"] > before and i["id"] != found["id"] and i["severity"] == "outage"
        ]
        run["extra_incidents"] = [f"{i['ref']} {i['fault']}: {i['title']}" for i in extra]
    s.wait_all_resolved(resolve_timeout)
    return run


def fault_session(fault: str, runs: int, args: Any, results: list[dict[str, Any]]) -> None:
    with Session(fault, args.clients, args.rps) as s:
        # Normal traffic before the first fault, as on a daemon that has been running: a
        # full error_rate window and then some, so the request-rate baseline has settled;
        # for the faults judged from the log, three minutes, so error_rate's history (what
        # a sudden rise is compared with) holds a few thousand requests, not a few hundred.
        if args.warmup is not None:
            warmup = args.warmup
        else:
            warmup = max(s.window + 10.0, LOGGED_WARMUP if fault in LOGGED_5XX else 0.0)
        time.sleep(warmup)
        last_logged: float | None = None
        for n in range(runs):
            if fault in LOGGED_5XX and last_logged is not None:
                wait = s.window + 2 - (time.monotonic() - last_logged)
                if wait > 0:
                    time.sleep(wait)
            r = one_run(s, fault, args.hold, args.detect_timeout, args.resolve_timeout)
            if fault in LOGGED_5XX:
                last_logged = time.monotonic()
            r["run"] = n + 1
            results.append(r)
            print("  " + describe(r), flush=True)
            if s.traffic is not None and s.traffic.error:
                raise bl.BenchError(f"lab traffic failed: {s.traffic.error}")


def describe(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['fault']} run {r.get('run')}: {r['error']}"
    if not r.get("detected"):
        return f"{r['fault']} run {r.get('run')}: NOT DETECTED"
    aff = r.get("affected")
    truth = r.get("truth_affected")
    resolved = f"in {r['resolve_seconds']:.1f}s" if r.get("resolved") else "NO"
    return (
        f"{r['fault']} run {r.get('run')}: visible after {r['latency']:.2f}s "
        f"(cli {r.get('cli_seconds', 0):.2f}s), top cause {r.get('top_cause')} "
        f"({'right' if r.get('correct') else 'WRONG, expected ' + str(r.get('expected'))}), "
        f"affected {aff if aff is not None else '-'} vs truth {truth}, "
        f"resolved {resolved}"
        + (f", extra: {r['extra_incidents']}" if r.get("extra_incidents") else "")
    )


def healthy_run(seconds: float, args: Any) -> dict[str, Any]:
    with Session("healthy", args.clients, args.rps) as s:
        before = s.max_id()
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            assert s.daemon is not None
            s.daemon.check_alive()
            time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - start))))
        assert s.traffic is not None
        report = s.traffic.cut()
        opened = [i for i in s.incidents() if i["id"] > before]
    return {
        "seconds": seconds,
        "requests": report.get("requests"),
        "clients": report.get("clients"),
        "status_classes": report.get("status_classes"),
        "false_incidents": len([i for i in opened if i["severity"] == "outage"]),
        "monitoring_incidents": len([i for i in opened if i["severity"] != "outage"]),
        "incidents": [f"{i['ref']} {i['severity']} {i['fault']}: {i['title']}" for i in opened],
    }


# What the peers take with their documented defaults (see BENCHMARKS.md for the sources).
# Prometheus: the failure waits for the next scrape (uniform over the 1m scrape interval),
# then for the next rule evaluation (uniform over the 1m evaluation interval, not aligned
# with scrapes), then Alertmanager holds a new group for group_wait (30s). The sum of two
# uniforms over 0..60 has its median at 60: median 90 s, worst 150 s (`for: 0s`); a rule
# with `for: 1m` adds 60 s. Gatus: the first failing check comes within the 60 s interval,
# and the alert needs 3 failures in a row: median 30 + 120 = 150 s, worst 180 s.
PEERS = {
    "Prometheus + blackbox_exporter + Alertmanager (1m/1m, for 0s, group_wait 30s)": (90, 150),
    "same with an alert rule `for: 1m`": (150, 210),
    "Gatus (interval 60s, failure-threshold 3)": (150, 180),
}


def main(argv: list[str] | None = None) -> int:
    bl.stop_on_sigterm()
    p = bl.parser("Detection latency and accuracy against the fault lab.")
    p.add_argument("--faults", help="comma-separated lab faults (default: all; smoke: 2)")
    p.add_argument("--runs", type=int, help="runs per fault (default 10; smoke 1)")
    p.add_argument("--healthy-seconds", type=float, help="healthy run (default 600; smoke 20)")
    p.add_argument("--clients", type=int, default=40, help="lab traffic clients")
    p.add_argument("--rps", type=float, default=20.0, help="lab traffic requests per second")
    p.add_argument("--hold", type=float, help="seconds from break to fix (default 5; smoke 1)")
    p.add_argument(
        "--warmup",
        type=float,
        help="normal traffic before the first run (default: error_rate window + 10 s, 180 s for"
        " faults seen in the access log; smoke 2)",
    )
    p.add_argument("--detect-timeout", type=float, default=30.0)
    p.add_argument("--resolve-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    from recorder.lab.faults import FAULTS

    if args.faults:
        faults = [f.strip() for f in args.faults.split(",") if f.strip()]
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            print(f"detection: unknown faults {unknown}; valid: {', '.join(FAULTS)}")
            return 2
    elif args.smoke:
        faults = list(SMOKE_FAULTS)
    else:
        faults = [f for f in FAULTS if f != "bad-deploy"] + ["bad-deploy"]
    runs = args.runs or (1 if args.smoke else 10)
    healthy_seconds = (
        args.healthy_seconds
        if args.healthy_seconds is not None
        else (20.0 if args.smoke else 600.0)
    )
    args.hold = args.hold if args.hold is not None else (1.0 if args.smoke else 5.0)
    if args.warmup is None and args.smoke:
        args.warmup = 2.0
    print(bl.machine_line())
    print(
        f"faults: {', '.join(faults)}; {runs} run(s) each; traffic {args.clients} clients at "
        f"{args.rps:g} req/s; healthy run {healthy_seconds:g}s"
    )
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    for fault in faults:
        print(f"{fault}:", flush=True)
        try:
            fault_session(fault, runs, args, results)
        except (bl.BenchError, OSError) as exc:
            failures.append(f"{fault}: {exc}")
            print(f"  FAILED: {exc}", flush=True)
    healthy: dict[str, Any] = {}
    if healthy_seconds > 0:
        print(f"healthy run ({healthy_seconds:g}s of steady traffic, no fault):", flush=True)
        try:
            healthy = healthy_run(healthy_seconds, args)
            print(
                f"  {healthy['requests']} requests from {healthy['clients']} clients; "
                f"false incidents: {healthy['false_incidents']} "
                f"(monitoring incidents: {healthy['monitoring_incidents']}) {healthy['incidents']}"
            )
        except (bl.BenchError, OSError) as exc:
            failures.append(f"healthy run: {exc}")
            print(f"  FAILED: {exc}")
    per_fault = summarize(faults, results)
    print()
    print_summary(per_fault, healthy)
    all_latencies = [r["latency"] for r in results if "latency" in r]
    detected = [x for x in all_latencies if math.isfinite(x)]
    overall = {
        "runs": len(results),
        "detected": len(detected),
        "median_latency": bl.median(all_latencies) if all_latencies else None,
        "worst_latency": max(all_latencies) if all_latencies else None,
        "correct_top_cause": sum(1 for r in results if r.get("correct")),
        "affected_errors_max": max(
            (r["affected_error"] for r in results if "affected_error" in r), default=None
        ),
    }
    if all_latencies:
        med, worst = bl.median(all_latencies), max(all_latencies)
        print(
            f"overall: {overall['detected']}/{overall['runs']} detected; median {med:.2f}s "
            f"(target <= 2 s: {bl.verdict(med <= 2)}), worst {worst:.2f}s "
            f"(target <= 3 s: {bl.verdict(worst <= 3)}); top root cause right in "
            f"{overall['correct_top_cause']}/{overall['runs']} "
            f"({bl.verdict(overall['correct_top_cause'] == overall['runs'])})"
        )
    print("peers, worked out from their documented defaults (median / worst):")
    for name, (typical, worst_peer) in PEERS.items():
        print(f"  {name}: {typical} s / {worst_peer} s")
    path = bl.save_results(
        args.out,
        "detection",
        {
            "smoke": args.smoke,
            "faults": faults,
            "runs_per_fault": runs,
            "traffic": {"clients": args.clients, "rps": args.rps, "hold": args.hold},
            "per_fault": per_fault,
            "overall": overall,
            "healthy": healthy,
            "peers": {k: {"median": v[0], "worst": v[1]} for k, v in PEERS.items()},
            "runs": results,
            "failures": failures,
        },
    )
    print(f"figures: {path}")
    for failure in failures:
        print(f"failed: {failure}")
    complete = len(results) == len(faults) * runs and not any("error" in r for r in results)
    return 0 if complete and not failures else 1


def summarize(faults: list[str], results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for fault in faults:
        rs = [r for r in results if r["fault"] == fault and "latency" in r]
        if not rs:
            continue
        lat = [r["latency"] for r in rs]
        errors = [r["affected_error"] for r in rs if "affected_error" in r]
        out[fault] = {
            "expected": rs[0].get("expected"),
            "runs": len(rs),
            "detected": sum(1 for r in rs if r.get("detected")),
            "median": round(bl.median(lat), 3),
            "worst": round(max(lat), 3),
            "correct": sum(1 for r in rs if r.get("correct")),
            "top_causes": sorted({str(r.get("top_cause")) for r in rs}),
            "affected_error_median": round(bl.median(errors), 4) if errors else None,
            "affected_error_max": round(max(errors), 4) if errors else None,
            "affected_measured": len(errors),
            "truth_median": bl.median(
                [r["truth_affected"] for r in rs if r.get("truth_affected") is not None]
            ),
            "resolved": sum(1 for r in rs if r.get("resolved")),
            "extra_incidents": sum(len(r.get("extra_incidents") or []) for r in rs),
            "cli_seconds_median": bl.median([r["cli_seconds"] for r in rs if "cli_seconds" in r]),
        }
    return out


def print_summary(per_fault: dict[str, dict[str, Any]], healthy: dict[str, Any]) -> None:
    rows = []
    for fault, f in per_fault.items():
        err = (
            f"{f['affected_error_median']:.3f} / {f['affected_error_max']:.3f}"
            if f["affected_error_max"] is not None
            else "not measured"
        )
        rows.append(
            (
                fault,
                f["expected"],
                f"{f['detected']}/{f['runs']}",
                f"{f['median']:.2f}",
                f"{f['worst']:.2f}",
                f"{f['correct']}/{f['runs']}",
                err,
                f"{f['resolved']}/{f['detected']}",
                f["extra_incidents"],
            )
        )
    print(
        bl.table(
            (
                "fault",
                "kind",
                "detected",
                "median s",
                "worst s",
                "top cause right",
                "affected err med/max",
                "resolved",
                "extra",
            ),
            rows,
        )
    )
    if healthy:
        print(
            f"false incidents in {healthy['seconds']:g}s healthy: {healthy['false_incidents']} "
            f"(target 0: {bl.verdict(healthy['false_incidents'] == 0)})"
        )


if __name__ == "__main__":
    sys.exit(main())
