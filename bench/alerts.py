"""Alerts into one growing incident through the real webhook: does each batch cost the
same, or more as the incident grows (issue 22 item 2)?

    python bench/alerts.py                          # 3 batches of 1,000 new alerts
    python bench/alerts.py --peer /tmp/rows-main    # and the same against another checkout
    python bench/alerts.py --smoke                  # 3 batches of 50

The lab is started once (its nginx stack, so the probes find the site healthy and only the
alerts make the incident). Then, for the peer checkout when given and for this one, a
daemon of that checkout (`python -m recorder`, its sources first on PYTHONPATH, this
venv's packages) with a fresh state dir and a webhook token: the batches are POSTed one
after another, each one notification of N alerts never seen before (one service, one
host, so all join one incident), timed from the request to the answer. Afterwards the
store must hold every alert, in one incident: nothing lost, nothing split.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml

WEBHOOK = "/api/v1/alertmanager"
WARMUP = 5.0  # seconds after /healthz before the first batch: the first sweep is done


def batch_body(batch: int, count: int) -> bytes:
    """One Alertmanager notification (version 4) of `count` alerts new to the recorder."""
    starts = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "BenchHighErrorRate",
                "instance": "lb-01",
                "service": "web",
                "fault": "http-5xx",
                "pool": f"{batch}-{i}",
            },
            "annotations": {"summary": f"5xx above 5% on pool {batch}-{i}"},
            "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.invalid/graph",
            "fingerprint": f"{batch:04x}{i:012x}",
        }
        for i in range(count)
    ]
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "recorder",
        "groupKey": f'{{}}:{{batch="{batch}"}}',
        "truncatedAlerts": 0,
        "groupLabels": {"batch": str(batch)},
        "commonLabels": {"alertname": "BenchHighErrorRate", "service": "web"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def post(port: int, token: str, body: bytes) -> tuple[int, float, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    start = time.perf_counter()
    try:
        conn.request("POST", WEBHOOK, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, time.perf_counter() - start, text[:200]
    finally:
        conn.close()


def stored(state_dir: Path) -> tuple[int, int, int]:
    """(alerts stored, incidents they landed in, the store's schema version: which
    recorder wrote it), read after the daemon stopped."""
    with sqlite3.connect(state_dir / "recorder.db") as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        alerts = db.execute("SELECT count(*) FROM alerts").fetchone()[0]
        incidents = db.execute(
            "SELECT count(DISTINCT incident_id) FROM alerts WHERE incident_id IS NOT NULL"
        ).fetchone()[0]
    return int(alerts), int(incidents), int(version)


def measure(
    name: str, source: Path, lab_config: Path, scratch: Path, batches: int, count: int
) -> dict[str, Any]:
    work = scratch / name
    work.mkdir()
    token = secrets.token_urlsafe(24)
    token_file = work / "webhook-token"
    token_file.write_text(token + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    port = bl.free_ports(1)[0]
    data: dict[str, Any] = yaml.safe_load(lab_config.read_text(encoding="utf-8"))
    data["state_dir"] = str(work / "state")
    data["listen"] = f"127.0.0.1:{port}"
    data["alertmanager"] = {**(data.get("alertmanager") or {}), "token_file": str(token_file)}
    data["alertmanager"]["max_body"] = 16 * 1024 * 1024
    config = work / "recorder.yml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(source)}
    out: dict[str, Any] = {"source": str(source), "batches": []}
    # -P: not the current directory first on the path, so PYTHONPATH picks the checkout.
    command = [bl.PYTHON, "-P", "-m", "recorder"]
    with bl.running_daemon(config, data["listen"], work / "daemon.log", command, env) as daemon:
        time.sleep(WARMUP)
        daemon.check_alive()
        for batch in range(batches):
            status, seconds, text = post(port, token, batch_body(batch, count))
            out["batches"].append({"status": status, "seconds": round(seconds, 3)})
            print(
                f"{name}: batch {batch + 1} of {count:,} new alerts: {seconds:.2f} s,"
                f" HTTP {status}" + ("" if status == 200 else f" ({text})"),
                flush=True,
            )
        daemon.check_alive()
    out["alerts_stored"], out["incidents"], out["schema"] = stored(work / "state")
    print(
        f"{name}: {out['alerts_stored']:,} alerts stored in {out['incidents']} incident(s),"
        f" store schema {out['schema']}",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    bl.stop_on_sigterm()
    p = bl.parser("Batches of new alerts into one incident through the webhook.")
    p.add_argument("--peer", type=Path, help="another checkout to measure in the same run")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--alerts", type=int, help="new alerts per batch (default 1000; smoke 50)")
    args = p.parse_args(argv)
    count = args.alerts or (50 if args.smoke else 1000)
    print(bl.machine_line())
    from recorder.lab.core import Lab

    scratch = bl.scratch_dir("alerts")
    lab = Lab(scratch / "lab")
    results: dict[str, Any] = {"alerts_per_batch": count}
    failures: list[str] = []
    sides = ([("peer", args.peer.resolve())] if args.peer else []) + [("this", bl.REPO)]
    try:
        lab.up()
        for name, source in sides:
            side = measure(name, source, lab.config_path, scratch, args.batches, count)
            results[name] = side
            expected = args.batches * count
            if side["alerts_stored"] != expected or side["incidents"] != 1:
                failures.append(
                    f"{name}: {side['alerts_stored']} of {expected} alerts stored,"
                    f" in {side['incidents']} incidents"
                )
            if any(b["status"] != 200 for b in side["batches"]):
                failures.append(f"{name}: a batch was not answered 200")
    except bl.BenchError as exc:
        failures.append(str(exc))
        print(f"FAILED: {exc}")
    finally:
        lab.down()
        bl.remove_scratch(scratch, keep=bool(failures))
    if "peer" in results and "this" in results:
        rows = []
        for i, (a, b) in enumerate(
            zip(results["peer"]["batches"], results["this"]["batches"], strict=True)
        ):
            ratio = a["seconds"] / b["seconds"] if b["seconds"] else float("inf")
            rows.append((i + 1, f"{a['seconds']:.2f}", f"{b['seconds']:.2f}", f"{ratio:.1f}x"))
        print(bl.table(("batch", "peer s", "this s", "peer / this"), rows))
    path = bl.save_results(
        args.out, "alerts", {"smoke": args.smoke, **results, "failures": failures}
    )
    print(f"figures: {path}")
    for failure in failures:
        print(f"failed: {failure}")
    return 0 if not failures and "this" in results else 1


if __name__ == "__main__":
    sys.exit(main())
