"""A real `recorder run` against the real lab, delivering to a loopback webhook that is
down: kill -9 with deliveries pending, restart, bring the receiver up, and every event
arrives, once per delivery id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from recorder.lab.core import Lab
from recorder.store import Store
from tests.notify_sink import Sink, free_port
from tests.test_daemon import Daemon, wait_until

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


def test_kill_9_with_the_receiver_down_loses_no_notification(lab: Lab, tmp_path: Path) -> None:
    port = free_port()  # nothing listens yet: the receiver is down
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
    daemon = Daemon(config, tmp_path / "daemon.log")
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
