"""Notification latency: from `lab break` to the message at loopback receivers, beside the
detection time, in one run.

    python bench/notify.py            # 6 lab faults, 3 runs each
    python bench/notify.py --smoke    # 2 faults, 1 run each

One lab (`Lab(dir).up()`, interval 1s, `for: 0s`) and `recorder run` on its recorder.yml,
whose `notify` routes every event to the lab's webhook sink (a separate process that checks
the signature and stamps each message's arrival); this script adds a Slack-format and a
PagerDuty-format receiver on loopback (in this process, stamping arrival too). Per run:

1. `Lab.break_(FAULT)`; the clock starts when it returns (as `recorder lab break` would);
2. the incident's `detected_at` (wall clock, written by the daemon) is the detection time;
3. each receiver's `opened` message for that incident (matched by the incident, so one
   sent before `break_()` returned counts too) is its arrival time;
4. `Lab.fix(FAULT)`, wait for the resolution and its messages, then the next run.

Target (issue 17): every message within 1 s of the incident opening (detected_at).
Faults that need client traffic to show (backend-5xx, bad-deploy, traffic-spike) are left
out: their detection is bench/detection.py's; the path from an open incident to a message
is the same for every fault.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import benchlib as bl
import yaml

FAULTS = (
    "nginx-down",
    "missing-symlink",
    "dangling-symlink",
    "config-syntax",
    "upstream-down",
    "slow-backend",
)
SMOKE_FAULTS = ("nginx-down", "config-syntax")
TARGET = 1.0  # seconds from the incident opening to the message


class Arrivals:
    """A loopback HTTP receiver: every POST's path, body and wall-clock arrival time."""

    def __init__(self) -> None:
        self.got: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with arrivals.lock:
                    arrivals.got.append((at, self.path, json.loads(body or b"{}")))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def opened(self, path: str, ref: str) -> float | None:
        """When this incident's `opened` message reached `path`. Matched by the incident,
        not by arrival after the break: the recorder can see a fault (a missing symlink)
        and send before `Lab.break_()` has finished reloading nginx and returned."""
        with self.lock:
            return next((at for at, p, body in self.got if p == path and opens(body, ref)), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def opens(body: dict[str, Any], ref: str) -> bool:
    """A Slack or PagerDuty body announcing that incident `ref` opened."""
    if "dedup_key" in body:  # PagerDuty: the incident ref is the dedup_key
        details = body.get("payload", {}).get("custom_details", {})
        return bool(body["dedup_key"] == ref and details.get("event") == "opened")
    return str(body.get("text", "")).startswith(f"Incident opened: {ref} ")


def sink_first_after(messages: Path, incident_id: int) -> float | None:
    """When the lab's webhook sink received this incident's `opened` message."""
    from datetime import datetime

    for line in messages.read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        if m["event"] == "opened" and m["body"]["incident"]["id"] == incident_id:
            return datetime.fromisoformat(m["received_at"]).timestamp()
    return None


def add_receivers(config_path: Path, port: int, scratch: Path) -> None:
    """The lab's config with a Slack-format and a PagerDuty-format receiver beside the sink."""
    key = scratch / "pd-key"
    key.write_text("bench-routing-key\n")
    key.chmod(0o600)
    data = yaml.safe_load(config_path.read_text())
    notify = data["notify"]
    notify["receivers"]["chat"] = {"slack": {"url": f"http://127.0.0.1:{port}/slack"}}
    notify["receivers"]["pager"] = {
        "pagerduty": {"routing_key_file": str(key), "url": f"http://127.0.0.1:{port}/pagerduty"}
    }
    notify["routes"].append({"events": ["opened", "resolved"], "receivers": ["chat", "pager"]})
    config_path.write_text(yaml.safe_dump(data, sort_keys=False))


def wait(what: str, timeout: float, probe: Any, daemon: bl.Daemon) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemon.check_alive()
        got = probe()
        if got:
            return got
        time.sleep(0.02)
    raise bl.BenchError(f"{what} not within {timeout:g}s; daemon log: {daemon.log_tail()}")


def one_run(lab: Any, fault: str, store: Any, daemon: bl.Daemon, rx: Arrivals) -> dict[str, Any]:
    known = {i.id for i in store.list()}
    lab.break_(fault)
    broke = time.time()
    try:
        incident = wait(
            "an incident",
            20,
            lambda: next((i for i in store.list() if i.id not in known), None),
            daemon,
        )
        messages = Path(lab.status()["notify"]["messages"])
        ref = incident.ref
        arrived = {
            "webhook": wait(
                "the webhook message", 10, lambda: sink_first_after(messages, incident.id), daemon
            ),
            "slack": wait("the Slack message", 10, lambda: rx.opened("/slack", ref), daemon),
            "pagerduty": wait(
                "the PagerDuty message", 10, lambda: rx.opened("/pagerduty", ref), daemon
            ),
        }
    finally:
        lab.fix(fault)
    wait(
        "the resolution",
        40,
        lambda: (i := store.get(incident.id)) is not None and i.status != "open",
        daemon,
    )
    time.sleep(1.0)  # the resolved messages land before the next break
    detected = incident.detected_at.timestamp() - broke
    return {
        "fault": fault,
        "incident": incident.id,
        "detection": detected,
        "message": {k: v - broke for k, v in arrived.items()},
        "after_opening": {k: v - incident.detected_at.timestamp() for k, v in arrived.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = bl.parser(__doc__.splitlines()[0] if __doc__ else "notify")
    p.add_argument("--runs", type=int, default=None, help="runs per fault (3; smoke 1)")
    args = p.parse_args(argv)
    bl.stop_on_sigterm()
    faults = SMOKE_FAULTS if args.smoke else FAULTS
    runs = args.runs or (1 if args.smoke else 3)
    from recorder.config import load_config
    from recorder.lab.core import Lab
    from recorder.store import Store

    scratch = bl.scratch_dir("notify")
    lab = Lab(scratch / "lab")
    rx = Arrivals()
    results: list[dict[str, Any]] = []
    failed = True
    try:
        status = lab.up()
        config_path = Path(status["config"])
        add_receivers(config_path, rx.port, scratch)
        config = load_config(config_path)
        with bl.running_daemon(config_path, config.listen, scratch / "daemon.log") as daemon:
            store = Store(config.state_path)
            time.sleep(3)  # every check reports once: a healthy baseline
            for fault in faults:
                for _ in range(runs):
                    r = one_run(lab, fault, store, daemon, rx)
                    results.append(r)
                    m = r["message"]
                    print(
                        f"{fault:17} detection {r['detection']:.2f}s  message: "
                        + "  ".join(f"{k} {v:.2f}s" for k, v in m.items()),
                        flush=True,
                    )
        failed = False
    finally:
        rx.close()
        lab.down()
        bl.remove_scratch(scratch, keep=failed)
    rows = []
    summary: dict[str, Any] = {}
    detections = [r["detection"] for r in results]
    for name in ("webhook", "slack", "pagerduty"):
        msg = [r["message"][name] for r in results]
        after = [r["after_opening"][name] for r in results]
        summary[name] = {
            "message_median": bl.median(msg),
            "message_worst": max(msg),
            "after_opening_median": bl.median(after),
            "after_opening_worst": max(after),
        }
        rows.append(
            (
                name,
                f"{bl.median(detections):.2f} / {max(detections):.2f}",
                f"{bl.median(msg):.2f} / {max(msg):.2f}",
                f"{bl.median(after):.2f} / {max(after):.2f}",
            )
        )
    print()
    print(bl.machine_line())
    print(f"{len(results)} outages ({', '.join(faults)}; {runs} each); seconds, median / worst")
    header = ("receiver", "break to detection", "break to message", "opening to message")
    print(bl.table(header, rows))
    worst = max(s["after_opening_worst"] for s in summary.values())
    print(f"target: every message within {TARGET:g} s of the opening: {bl.verdict(worst < TARGET)}")
    bl.save_results(
        args.out,
        "notify",
        {
            "smoke": args.smoke,
            "faults": list(faults),
            "runs": results,
            "summary": summary,
            "target": TARGET,
        },
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bl.BenchError as exc:
        print(f"notify: {exc}", file=sys.stderr)
        sys.exit(1)
