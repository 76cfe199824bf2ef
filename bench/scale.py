"""Scale on one machine: the daemon's CPU share and peak RSS with 10, 100 and 1,000 HTTP
targets at a 10 s interval, plus every probe of the lab's three nginx hosts.

    python bench/scale.py              # 10, 100, 1000 targets; a 2-minute window each
    python bench/scale.py --smoke      # 10 targets, a 10-second window

For each size: a fresh state directory and `recorder run` as a child process watching the
lab and N targets (one real nginx, ours, listening on N loopback ports), light steady
traffic through the lab, a warm-up (the first round of probes, imports, caches), then the
measured window. CPU share is the daemon's utime+stime delta over the window from
/proc/PID/stat, as a fraction of one core; peak RSS is VmHWM from /proc/PID/status (the
high-water mark of its whole life, start-up included). The targets' access log counts the
probes that really arrived, and /metrics must show every target's http probe succeeding,
so a daemon that silently probes less cannot look cheap.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import benchlib as bl
import fleet

INTERVAL = 10.0


def measure_size(
    n: int, lab: Any, targets: fleet.TargetNginx, window: float, warmup: float, scratch: Path
) -> dict[str, Any]:
    run_dir = scratch / f"size-{n}"
    run_dir.mkdir()
    listen = f"127.0.0.1:{bl.free_ports(1)[0]}"
    config = fleet.fleet_config(
        lab.config_path,
        targets.ports[:n],
        out=run_dir / "recorder.yml",
        state_dir=run_dir / "state",
        listen=listen,
        interval=f"{INTERVAL:g}s",
    )
    with bl.running_daemon(config, listen, run_dir / "daemon.log") as daemon:
        time.sleep(warmup)
        daemon.check_alive()
        pid = daemon.pid
        requests0 = targets.requests_logged()
        cpu0, t0 = bl.proc_cpu_seconds(pid), time.monotonic()
        rss_samples = []
        while time.monotonic() - t0 < window:
            time.sleep(min(1.0, max(0.0, window - (time.monotonic() - t0))))
            daemon.check_alive()
            rss_samples.append(bl.proc_status_kb(pid, "VmRSS"))
        cpu1, t1 = bl.proc_cpu_seconds(pid), time.monotonic()
        requests1 = targets.requests_logged()
        hwm = bl.proc_status_kb(pid, "VmHWM")
        threads = bl.proc_threads(pid)
        status, body = bl.http_get(daemon.base_url + "/metrics", timeout=30.0)
        series, ok = fleet.probe_successes(body.decode("utf-8", "replace"))
    elapsed = t1 - t0
    return {
        "targets": n,
        "window_seconds": round(elapsed, 2),
        "cpu_share": round((cpu1 - cpu0) / elapsed, 4),
        "peak_rss_mb": round(hwm / 1024, 1),
        "rss_end_mb": round(rss_samples[-1] / 1024, 1) if rss_samples else None,
        "threads": threads,
        "target_probes_per_second": round((requests1 - requests0) / elapsed, 2),
        "expected_probes_per_second": round(n / INTERVAL, 2),
        "metrics_status": status,
        "http_series": series,
        "http_ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    bl.stop_on_sigterm()
    p = bl.parser("Daemon CPU and memory with 10, 100 and 1,000 HTTP targets.")
    p.add_argument("--sizes", help="comma-separated target counts (default 10,100,1000)")
    p.add_argument("--window", type=float, help="measured seconds per size (default 120)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 15)")
    args = p.parse_args(argv)
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([10] if args.smoke else [10, 100, 1000])
    )
    window = args.window or (10.0 if args.smoke else 120.0)
    warmup = args.warmup if args.warmup is not None else (3.0 if args.smoke else 15.0)
    limit = bl.raise_nofile_limit()
    print(bl.machine_line())
    print(
        f"sizes {sizes}, interval {INTERVAL:g}s, window {window:g}s after {warmup:g}s warm-up; "
        f"open files limit {limit}"
    )
    from recorder.lab.core import Lab
    from recorder.lab.traffic import traffic_to

    scratch = bl.scratch_dir("scale")
    lab = Lab(scratch / "lab")
    targets = fleet.TargetNginx(scratch / "targets", max(sizes))
    stop = threading.Event()
    traffic = threading.Thread(
        target=lambda: traffic_to(lab.url, 20, 5.0, 3600.0, timeout=5.0, stop=stop),
        name="lab-traffic",
        daemon=True,
    )
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    try:
        lab.up()
        targets.start()
        traffic.start()
        for n in sizes:
            try:
                r = measure_size(n, lab, targets, window, warmup, scratch)
            except bl.BenchError as exc:
                failures.append(f"{n} targets: {exc}")
                print(f"  {n} targets: FAILED: {exc}", flush=True)
                continue
            rows.append(r)
            print(
                f"  {n:5d} targets: CPU {r['cpu_share']:.1%} of one core, peak RSS "
                f"{r['peak_rss_mb']:.1f} MB, {r['threads']} threads, target probes "
                f"{r['target_probes_per_second']:.1f}/s "
                f"(expected {r['expected_probes_per_second']:g}/s), "
                f"http ok {r['http_ok']}/{r['http_series']}",
                flush=True,
            )
    finally:
        stop.set()
        if traffic.is_alive():
            traffic.join(30.0)
        targets.stop()
        lab.down()
        bl.remove_scratch(scratch, keep=bool(failures))
    print()
    print(
        bl.table(
            ("targets", "CPU % of 1 core", "peak RSS MB", "threads", "probes/s seen", "http ok"),
            [
                (
                    r["targets"],
                    f"{r['cpu_share'] * 100:.1f}",
                    f"{r['peak_rss_mb']:.1f}",
                    r["threads"],
                    f"{r['target_probes_per_second']:.1f} / {r['expected_probes_per_second']:g}",
                    f"{r['http_ok']}/{r['http_series']}",
                )
                for r in rows
            ],
        )
    )
    growth = growth_of(rows)
    if growth:
        at_core = growth["targets_at_one_core"]
        print(
            f"growth: {growth['cpu_per_100'] * 100:+.2f} points of CPU and "
            f"{growth['rss_mb_per_100']:+.1f} MB per 100 targets"
            + (
                f"; one core would be reached near {at_core:,} targets at a {INTERVAL:g}s interval"
                if at_core
                else ""
            )
        )
    at_1000 = next((r for r in rows if r["targets"] == 1000), None)
    if at_1000:
        print(
            f"at 1,000 targets: CPU {at_1000['cpu_share']:.1%} (target < 25%: "
            f"{bl.verdict(at_1000['cpu_share'] < 0.25)}), peak RSS {at_1000['peak_rss_mb']:.1f} MB "
            f"(target < 150 MB: {bl.verdict(at_1000['peak_rss_mb'] < 150)})"
        )
    # Every target and the lab's own hosts must have been probed, and found healthy.
    incomplete = [
        r["targets"]
        for r in rows
        if r["metrics_status"] != 200
        or r["http_series"] < r["targets"]
        or r["http_ok"] < r["http_series"]
    ]
    if incomplete:
        failures.append(f"not every target probed ok at sizes {incomplete}")
    path = bl.save_results(
        args.out,
        "scale",
        {
            "smoke": args.smoke,
            "interval": INTERVAL,
            "window": window,
            "warmup": warmup,
            "sizes": rows,
            "growth": growth,
            "failures": failures,
        },
    )
    print(f"figures: {path}")
    for failure in failures:
        print(f"failed: {failure}")
    return 0 if rows and not failures else 1


def growth_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A straight line through the smallest and largest sizes measured."""
    if len(rows) < 2:
        return None
    lo, hi = rows[0], rows[-1]
    dn = hi["targets"] - lo["targets"]
    if dn <= 0:
        return None
    cpu_slope = (hi["cpu_share"] - lo["cpu_share"]) / dn
    rss_slope = (hi["peak_rss_mb"] - lo["peak_rss_mb"]) / dn
    at_core = int(hi["targets"] + (1.0 - hi["cpu_share"]) / cpu_slope) if cpu_slope > 0 else None
    return {
        "cpu_per_100": round(cpu_slope * 100, 5),
        "rss_mb_per_100": round(rss_slope * 100, 2),
        "targets_at_one_core": at_core,
        "base_cpu": lo["cpu_share"],
        "base_rss_mb": lo["peak_rss_mb"],
    }


if __name__ == "__main__":
    sys.exit(main())
