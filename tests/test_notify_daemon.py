"""A real `recorder run` against the real lab, delivering to a loopback webhook that is
down: kill -9 with deliveries pending, restart, bring the receiver up, and every event
arrives, once per delivery id."""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from recorder.lab.core import Lab
from recorder.store import Store
from tests.notify_sink import Sink, free_port
from tests.test_daemon import Daemon, new_incident, resolved, wait_until

pytestmark = pytest.mark.slow

SECRET = "daemon-hook-secret"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("notify-lab") / "lab")
    with lab:
        yield lab


def outbox(state_dir: Path) -> list[dict[str, object]]:
    store = Store(state_dir)
    try:
        return store.deliveries(("pending", "sent", "failed", "skipped"))
    finally:
        store.close()


def daemon_config(lab: Lab, tmp_path: Path, port: int) -> Path:
    """The lab's config, with its own state and a webhook receiver at `port`."""
    secret = tmp_path / "hook-secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    data = yaml.safe_load(lab.config_path.read_text())
    data["defaults"]["recover_after"] = "2s"
    data["state_dir"] = str(tmp_path / "state")
    data["listen"] = f"127.0.0.1:{free_port()}"
    service = next(iter(data.get("services") or {"web": {}}))
    data["notify"] = {
        "receivers": {
            "hook": {
                "webhook": {"url": f"http://127.0.0.1:{port}/webhook", "secret_file": str(secret)},
                "timeout": "1s",
            }
        },
        "routes": [
            {"services": [service], "events": ["opened", "resolved"], "receivers": ["hook"]}
        ],
        "retry_max": "1s",
    }
    config = tmp_path / "recorder.yml"
    config.write_text(yaml.safe_dump(data))
    return config


def test_kill_9_with_the_receiver_down_loses_no_notification(lab: Lab, tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet: the receiver is down
    daemon = Daemon(daemon_config(lab, tmp_path, port), tmp_path / "daemon.log")
    sink = Sink(port=port, secret=SECRET)
    daemon.start()
    try:
        lab.break_("missing-symlink")
        try:
            wait_until(
                lambda: any(r["attempts"] for r in outbox(daemon.state_dir)),
                15,
                "an opened delivery tried and failed",
                daemon,
            )
            daemon.kill9()
            daemon.start()
        finally:
            lab.fix("missing-symlink")
        wait_until(
            lambda: {r["event"] for r in outbox(daemon.state_dir)} == {"opened", "resolved"},
            40,
            "the resolved delivery queued",
            daemon,
        )
        assert all(r["state"] == "pending" for r in outbox(daemon.state_dir))
        daemon.kill9()
        daemon.start()
        sink.start()
        wait_until(
            lambda: all(r["state"] == "sent" for r in outbox(daemon.state_dir)),
            15,
            "every delivery sent",
            daemon,
        )
        rows = outbox(daemon.state_dir)
        got = [r.body["delivery_id"] for r in sink.accepted("/webhook")]
        assert sorted(got) == sorted(str(r["delivery_id"]) for r in rows)
        assert [r.body["event"] for r in sink.accepted()] == ["opened", "resolved"]
        assert all(not r.problems for r in sink.received)
        metrics = requests.get(daemon.base + "/metrics", timeout=5).text
        assert 'recorder_notifications_total{outcome="sent",receiver="hook"} 2.0' in metrics
        assert "recorder_notify_outbox_depth 0.0" in metrics
        # Delivery latency runs from the event, not the last attempt: both waited out two
        # kills and a receiver that was down, seconds at least.
        assert "recorder_notify_delivery_seconds_count 2.0" in metrics
        (total,) = [
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("recorder_notify_delivery_seconds_sum")
        ]
        assert total >= 2.0, metrics
    finally:
        daemon.stop()
        sink.stop()


def detection_seconds(lab: Lab, daemon: Daemon) -> float:
    """Break the lab, wait for the incident, fix it, wait for it to resolve; how long
    after the break it was detected."""
    known = {i.id for i in daemon.incidents()}
    broke_at = datetime.now().astimezone()
    lab.break_("missing-symlink")
    try:
        incident = new_incident(daemon, known)
    finally:
        lab.fix("missing-symlink")
    resolved(daemon, incident.id)
    return (incident.detected_at - broke_at).total_seconds()


def test_a_hanging_receiver_does_not_slow_detection(lab: Lab, tmp_path: Path) -> None:
    """The receiver takes every request and never answers in time (each attempt times
    out after 1 s): probing and detection go on as with a healthy receiver."""
    sink = Sink(secret=SECRET).start()
    daemon = Daemon(daemon_config(lab, tmp_path, sink.port), tmp_path / "daemon.log")
    daemon.start()
    try:
        healthy = detection_seconds(lab, daemon)
        wait_until(lambda: len(sink.received) == 2, 10, "opened and resolved delivered", daemon)
        sink.hang = 30.0
        hanging = detection_seconds(lab, daemon)
        hanging_again = detection_seconds(lab, daemon)
        print(f"detection: {healthy:.2f}s; receiver hanging: {hanging:.2f}s, {hanging_again:.2f}s")
        assert sink.started >= 4, "the receiver was tried while it hung"
        assert max(hanging, hanging_again) < max(2 * healthy, healthy + 1.5), (
            healthy,
            hanging,
            hanging_again,
        )
        assert requests.get(daemon.base + "/healthz", timeout=5).status_code == 200
        pending = [r for r in outbox(daemon.state_dir) if r["state"] == "pending"]
        assert pending, "deliveries to the hanging receiver wait in the outbox"
    finally:
        daemon.stop()
        sink.stop()


def samples_taken(state_dir: Path) -> int:
    """Every probe observation the daemon has counted (history.db, hour buckets)."""
    db = sqlite3.connect(f"file:{state_dir / 'history.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT SUM(ok + fail + error) FROM samples WHERE width = 3600").fetchone()
    finally:
        db.close()
    return int(row[0] or 0)


def cycles(lab: Lab, daemon: Daemon, seconds: float, between: Callable[[int], None]) -> Phase:
    """Break/detect/fix/resolve cycles for `seconds`; `between(n)` runs before cycle n."""
    phase = Phase()
    taken, start = samples_taken(daemon.state_dir), time.monotonic()
    while not phase.detections or time.monotonic() - start < seconds:
        between(len(phase.detections))
        phase.detections.append(detection_seconds(lab, daemon))
    phase.elapsed = time.monotonic() - start
    phase.sample_rate = (samples_taken(daemon.state_dir) - taken) / phase.elapsed
    return phase


@dataclass
class Phase:
    detections: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    sample_rate: float = 0.0  # probe observations a second

    def line(self) -> str:
        d = sorted(self.detections)
        return (
            f"{len(d)} outages in {self.elapsed:.0f}s, detection median "
            f"{statistics.median(d):.2f}s worst {d[-1]:.2f}s, {self.sample_rate:.2f} samples/s"
        )


def receiver_soak(lab: Lab, tmp_path: Path, seconds: float) -> None:
    """A healthy baseline, then `seconds` of a receiver that alternately hangs past the
    timeout and answers 500, with outages broken and fixed all along: probing (samples a
    second) and detection stay as with the healthy receiver, nothing is lost from the
    outbox. RELIABILITY.md has the figures of the 60 s and 10-minute runs."""
    sink = Sink(secret=SECRET).start()
    daemon = Daemon(daemon_config(lab, tmp_path, sink.port), tmp_path / "daemon.log")
    daemon.start()
    try:
        time.sleep(2)  # the first sweep's start-up out of the baseline's sample rate
        healthy = cycles(lab, daemon, min(15.0, seconds / 4), lambda n: None)

        def misbehave(n: int) -> None:
            sink.hang, sink.status = (30.0, 200) if n % 2 == 0 else (0.0, 500)

        bad = cycles(lab, daemon, seconds, misbehave)
        print(f"\nreceiver healthy: {healthy.line()}\nreceiver hanging/500: {bad.line()}")
        assert sink.started > len(healthy.detections) * 2, "the receiver was tried throughout"
        worst_ok = max(healthy.detections)
        assert max(bad.detections) < max(2 * worst_ok, worst_ok + 1.5), (healthy, bad)
        # The median sits near half the 1 s interval (where in it the break falls).
        median_ok = statistics.median(healthy.detections)
        assert statistics.median(bad.detections) < max(median_ok, 0.5) + 0.5, (healthy, bad)
        assert bad.sample_rate > 0.9 * healthy.sample_rate, (healthy, bad)
        assert requests.get(daemon.base + "/healthz", timeout=5).status_code == 200
        rows = outbox(daemon.state_dir)
        # Every event of every outage is in the outbox: sent, or waiting (none dropped).
        assert len(rows) == 2 * (len(healthy.detections) + len(bad.detections))
        assert {r["state"] for r in rows} <= {"sent", "pending"}
    finally:
        daemon.stop()
        sink.stop()


def test_a_hanging_or_failing_receiver_slows_nothing(lab: Lab, tmp_path: Path) -> None:
    # scripts/reliability-receiver.sh runs this for 10 minutes (RECORDER_RECEIVER_SOAK=600).
    receiver_soak(lab, tmp_path, float(os.environ.get("RECORDER_RECEIVER_SOAK", "60")))


def test_lab_fault_inside_a_window_notifies_nobody_one_outlasting_it_once(
    lab: Lab, tmp_path: Path
) -> None:
    sink = Sink(secret=SECRET).start()
    config = daemon_config(lab, tmp_path, sink.port)
    service = yaml.safe_load(config.read_text())["notify"]["routes"][0]["services"][0]
    daemon = Daemon(config, tmp_path / "daemon.log")

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "recorder", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    daemon.start()
    try:
        # Harm that starts and ends inside the window: a planned record, no message.
        cli("maintenance", "start", "--service", service, "--for", "60s", "--reason", "restart")
        known = {i.id for i in daemon.incidents()}
        lab.break_("missing-symlink")
        try:
            planned = new_incident(daemon, known)
        finally:
            lab.fix("missing-symlink")
        done = resolved(daemon, planned.id)
        assert done.to_json()["planned"] is True
        assert "maintenance" in [e.kind for e in done.timeline]
        cli("maintenance", "end", "1")
        # Harm that outlasts a window: one incident, its message when the window ends.
        cli("maintenance", "start", "--service", service, "--for", "2s", "--reason", "reload")
        known = {i.id for i in daemon.incidents()}
        lab.break_("missing-symlink")
        try:
            incident = new_incident(daemon, known)
            assert incident.to_json()["planned"] is True
            wait_until(lambda: sink.accepted(), 10, "the message once the window ended", daemon)
        finally:
            lab.fix("missing-symlink")
        done = resolved(daemon, incident.id)
        wait_until(lambda: len(sink.accepted()) == 2, 10, "the resolved message", daemon)
        assert [r.body["event"] for r in sink.accepted()] == ["opened", "resolved"]
        assert {r.body["incident"]["id"] for r in sink.received} == {incident.id}
        assert done.to_json()["planned"] is False
        assert done.started_at == incident.started_at
        keys = [e.key for e in done.timeline if e.kind == "maintenance"]
        assert keys == ["maintenance:planned", "maintenance:over"]
        assert [i.id for i in daemon.incidents() if i.id not in known] == [incident.id]
    finally:
        daemon.stop()
        sink.stop()
