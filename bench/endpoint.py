"""The HTTP endpoint under load while the daemon works: `/metrics` scrape latency with
1,000 targets, and how many Alertmanager alerts per second the webhook takes in.

    python bench/endpoint.py            # 1,000 targets; 200 scrapes, wrk for 15 s, ingest steps
    python bench/endpoint.py --smoke    # 10 targets; 10 scrapes, wrk for 2 s, short steps

Set-up as bench/scale.py (the lab, one nginx with N loopback targets, the daemon probing
everything every 10 s), plus an Alertmanager token file. Then:

- `/metrics`: a Python client scrapes it one request at a time, as one Prometheus server
  would (p50, p99, body size), then `wrk` from Debian scrapes with a few connections
  (requests/s and its latency distribution);
- the webhook (`POST /api/v1/alertmanager`, bearer token): notifications of 10 alerts each
  (the same alert groups re-sent, as Alertmanager does), from 1, 2, 4, 8 then 16 concurrent
  senders with keep-alive connections, a few seconds per step. It stops at the first error
  or when a step brings less than 10% more alerts per second than the best one before
  (saturation); the best step is the ingest rate. Bounded in time and requests.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import benchlib as bl
import fleet

WEBHOOK = "/api/v1/alertmanager"
ALERTS_PER_NOTIFICATION = 10
MAX_REQUESTS_PER_STEP = 20_000


def scrape_latencies(host: str, port: int, count: int) -> dict[str, Any]:
    latencies: list[float] = []
    size = series = 0
    for _ in range(count):
        start = time.perf_counter()
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise bl.BenchError(f"/metrics answered {response.status}")
        finally:
            conn.close()
        latencies.append(time.perf_counter() - start)
        size = len(body)
        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    return {
        "scrapes": count,
        "p50_ms": round(bl.percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(bl.percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "body_bytes": size,
        "series": series,
    }


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk_scrape(url: str, seconds: float, connections: int) -> dict[str, Any] | None:
    if shutil.which("wrk") is None:
        return None
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise bl.BenchError(f"wrk failed: {done.stderr.strip()}")
    out: dict[str, Any] = {"connections": connections, "seconds": seconds}
    for q in ("50", "90", "99"):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", done.stdout, re.M)
        if m:
            out[f"p{q}_ms"] = round(float(m.group(1)) * _UNITS[m.group(2)], 2)
    m = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    out["requests_per_second"] = float(m.group(1)) if m else None
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    out["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors:.*", done.stdout)
    out["socket_errors"] = m.group(0) if m else None
    return out


def notification(worker: int, seq: int) -> bytes:
    """An Alertmanager webhook body (version 4) with ALERTS_PER_NOTIFICATION alerts."""
    starts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    group = seq % 5
    alerts = []
    for i in range(ALERTS_PER_NOTIFICATION):
        labels = {
            "alertname": "BenchHighErrorRate",
            "instance": "lb-01",
            "service": "web",
            "severity": "critical",
            "fault": "http-5xx",
            "sender": f"w{worker}",
            "group": str(group),
            "n": str(i),
        }
        alerts.append(
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"bench alert {worker}/{group}/{i}"},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.invalid/graph",
                "fingerprint": f"{worker:04x}{group:04x}{i:08x}",
            }
        )
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "recorder",
        "groupKey": f'{{}}:{{sender="w{worker}", group="{group}"}}',
        "truncatedAlerts": 0,
        "groupLabels": {"sender": f"w{worker}", "group": str(group)},
        "commonLabels": {"alertname": "BenchHighErrorRate", "service": "web"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def ingest_step(host: str, port: int, token: str, senders: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    budget = [MAX_REQUESTS_PER_STEP]

    def sender(worker: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        seq = 0
        try:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0 or errors:
                        return
                    budget[0] -= 1
                body = notification(worker, seq)
                seq += 1
                start = time.perf_counter()
                try:
                    conn.request("POST", WEBHOOK, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    return
                elapsed = time.perf_counter() - start
                with lock:
                    if 200 <= status < 300:
                        latencies.append(elapsed)
                    else:
                        errors.append(f"HTTP {status}")
                        return
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=sender, args=(w,)) for w in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    elapsed = time.monotonic() - started
    accepted = len(latencies) * ALERTS_PER_NOTIFICATION
    return {
        "senders": senders,
        "seconds": round(elapsed, 2),
        "notifications": len(latencies),
        "alerts_per_second": round(accepted / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(bl.percentile(latencies, 50) * 1000, 2) if latencies else None,
        "p99_ms": round(bl.percentile(latencies, 99) * 1000, 2) if latencies else None,
        "errors": errors[:3],
    }


def check_auth(host: str, port: int) -> int:
    """The webhook must refuse a request without the token (else we measure nothing real)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", WEBHOOK, body=notification(0, 0), headers={})
        response = conn.getresponse()
        response.read()
        return int(response.status)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    bl.stop_on_sigterm()
    p = bl.parser("/metrics scrape latency and Alertmanager webhook ingest rate.")
    p.add_argument("--targets", type=int, help="HTTP targets (default 1000; smoke 10)")
    p.add_argument("--scrapes", type=int, help="sequential scrapes (default 200; smoke 10)")
    p.add_argument("--wrk-seconds", type=float, help="wrk duration (default 15; smoke 2)")
    p.add_argument("--step-seconds", type=float, help="ingest step length (default 5; smoke 1)")
    p.add_argument("--warmup", type=float, help="seconds before measuring (default 15; smoke 3)")
    args = p.parse_args(argv)
    n = args.targets or (10 if args.smoke else 1000)
    scrapes = args.scrapes or (10 if args.smoke else 200)
    wrk_seconds = args.wrk_seconds or (2.0 if args.smoke else 15.0)
    step_seconds = args.step_seconds or (1.0 if args.smoke else 5.0)
    warmup = args.warmup if args.warmup is not None else (3.0 if args.smoke else 15.0)
    bl.raise_nofile_limit()
    print(bl.machine_line())
    from recorder.lab.core import Lab

    scratch = bl.scratch_dir("endpoint")
    lab = Lab(scratch / "lab")
    targets = fleet.TargetNginx(scratch / "targets", n)
    token = secrets.token_urlsafe(24)
    token_file = scratch / "webhook-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    listen_port = bl.free_ports(1)[0]
    listen = f"127.0.0.1:{listen_port}"
    results: dict[str, Any] = {"targets": n}
    failures: list[str] = []
    try:
        lab.up()
        targets.start()
        config = fleet.fleet_config(
            lab.config_path,
            targets.ports,
            out=scratch / "recorder.yml",
            state_dir=scratch / "state",
            listen=listen,
            token_file=token_file,
        )
        with bl.running_daemon(config, listen, scratch / "daemon.log") as daemon:
            time.sleep(warmup)
            daemon.check_alive()
            m = scrape_latencies("127.0.0.1", listen_port, scrapes)
            results["metrics"] = m
            print(
                f"/metrics with {n} targets, {scrapes} sequential scrapes: p50 {m['p50_ms']} ms, "
                f"p99 {m['p99_ms']} ms, max {m['max_ms']} ms ({m['body_bytes'] / 1024:.0f} KiB, "
                f"{m['series']} series)",
                flush=True,
            )
            w = wrk_scrape(daemon.base_url + "/metrics", wrk_seconds, 4)
            results["metrics_wrk"] = w
            if w:
                print(
                    f"/metrics under wrk (2 threads, 4 connections, {wrk_seconds:g}s): "
                    f"{w['requests_per_second']} req/s, p50 {w.get('p50_ms')} ms, "
                    f"p99 {w.get('p99_ms')} ms, non-2xx {w['non_2xx']}",
                    flush=True,
                )
            daemon.check_alive()
            unauthorized = check_auth("127.0.0.1", listen_port)
            results["webhook_without_token_status"] = unauthorized
            if unauthorized not in (401, 403):
                failures.append(f"the webhook accepted a request without token ({unauthorized})")
            steps: list[dict[str, Any]] = []
            best: dict[str, Any] | None = None
            stop_reason = "bounded: 16 senders reached"
            for senders in (1, 2, 4, 8, 16):
                step = ingest_step("127.0.0.1", listen_port, token, senders, step_seconds)
                steps.append(step)
                print(
                    f"webhook, {senders:2d} sender(s): {step['alerts_per_second']:8.1f} alerts/s, "
                    f"p50 {step['p50_ms']} ms, p99 {step['p99_ms']} ms"
                    + (f", errors: {step['errors']}" if step["errors"] else ""),
                    flush=True,
                )
                if step["errors"]:
                    stop_reason = f"first error at {senders} senders: {step['errors'][0]}"
                    break
                if best is not None and step["alerts_per_second"] < 1.1 * best["alerts_per_second"]:
                    stop_reason = f"saturated: {senders} senders brought less than 10% more"
                    best = max(best, step, key=lambda s: s["alerts_per_second"])
                    break
                best = (
                    step if best is None else max(best, step, key=lambda s: s["alerts_per_second"])
                )
            daemon.check_alive()
            results["webhook"] = {"steps": steps, "best": best, "stopped": stop_reason}
            if best:
                print(
                    f"webhook ingest: {best['alerts_per_second']:.0f} alerts/s at "
                    f"{best['senders']} sender(s) (p99 {best['p99_ms']} ms); stopped: {stop_reason}"
                )
            else:
                failures.append("no webhook request succeeded")
    except bl.BenchError as exc:
        failures.append(str(exc))
        print(f"FAILED: {exc}")
    finally:
        targets.stop()
        lab.down()
        bl.remove_scratch(scratch, keep=bool(failures))
    path = bl.save_results(
        args.out, "endpoint", {"smoke": args.smoke, **results, "failures": failures}
    )
    print(f"figures: {path}")
    for failure in failures:
        print(f"failed: {failure}")
    return 0 if not failures and "metrics" in results else 1


if __name__ == "__main__":
    sys.exit(main())
