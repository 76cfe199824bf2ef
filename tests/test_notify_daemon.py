"""A real `recorder run` against the real lab, delivering to a loopback webhook that is
down: kill -9 with deliveries pending, restart, bring the receiver up, and every event
arrives, once per delivery id."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
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
