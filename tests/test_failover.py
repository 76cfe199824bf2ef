"""Two real `recorder run` daemons on one real PostgreSQL (#21): each its own state dir
and listen port, both watching the same lab. One leads (opens, joins and resolves
incidents, sends notifications); the other probes and waits. Killed or paused, the leader
is replaced within the lease plus one renewal, and nothing is written twice."""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from recorder.api import WEBHOOK_PATH
from recorder.lab import peers
from recorder.lab.core import Lab
from recorder.lab.peers import Server
from recorder.model import Incident
from recorder.receivers import DELIVERY_HEADER
from recorder.store import Store
from tests.conftest import free_port
from tests.test_daemon import RECOVER_AFTER, Daemon, new_incident, resolved, wait_until
from tests.test_prometheus_e2e import (
    alertmanager_config,
    http_5xx_alert,
    webhook_notifications,
)

LEASE = 2.0  # seconds: short, so a takeover takes seconds (the default is 15 s)
# The standby renews every LEASE / 3 and its engine wakes every 0.5 s: a dead leader's
# lease runs out at most LEASE after its last renewal, so the takeover comes within
# LEASE + one renewal; the rest is slack for a loaded CI machine.
TAKEOVER_LIMIT = LEASE + LEASE / 3 + 1.5


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(tmp_path_factory.mktemp("failover-lab") / "lab")
    with lab:
        yield lab


class Receiver:
    """A webhook receiver on loopback that counts each delivery id it is sent."""

    def __init__(self) -> None:
        self.seen: collections.Counter[str] = collections.Counter()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                seen[self.headers.get(DELIVERY_HEADER, "")] += 1
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def token_file(tmp_path: Path) -> Path:
    """The webhook's bearer token, shared by both recorders and both Alertmanagers."""
    path = tmp_path / "webhook-token"
    if not path.exists():
        path.write_text("failover-" + "5" * 40 + "\n")
        path.chmod(0o600)
    return path


def pair(lab: Lab, postgres: Any, tmp_path: Path, receiver: Receiver) -> tuple[Daemon, Daemon]:
    """Two daemons, `a` and `b`, on one new database; neither started."""
    url = postgres.new_database()
    daemons = []
    for name in ("a", "b"):
        data = yaml.safe_load(lab.config_path.read_text())
        data["defaults"]["recover_after"] = f"{RECOVER_AFTER:g}s"
        data["state_dir"] = str(tmp_path / name / "state")
        data["listen"] = f"127.0.0.1:{free_port()}"
        data["store"] = {
            "url": url,
            "password_file": str(postgres.password_file),
            "lease": f"{LEASE:g}s",
            "holder": name,
        }
        data["alertmanager"] = {"token_file": str(token_file(tmp_path))}
        data["notify"] = {
            "receivers": {"hook": {"webhook": {"url": receiver.url}}},
            "routes": [{"receivers": ["hook"], "events": ["opened", "resolved", "cause-changed"]}],
        }
        config = tmp_path / name / "recorder.yml"
        config.parent.mkdir()
        config.write_text(yaml.safe_dump(data))
        daemons.append(Daemon(config, tmp_path / name / "daemon.log"))
    return daemons[0], daemons[1]


def role(daemon: Daemon) -> str:
    try:
        return requests.get(daemon.base + "/healthz", timeout=1).text.strip()
    except requests.RequestException:
        return "unreachable"


def leader_gauge(daemon: Daemon) -> float:
    text = requests.get(daemon.base + "/metrics", timeout=2).text
    line = next(x for x in text.splitlines() if x.startswith("recorder_leader "))
    return float(line.split()[1])


def outbox(daemon: Daemon) -> list[dict[str, Any]]:
    store = Store(daemon.state_dir, **daemon.store_args)
    try:
        return store.deliveries(("pending", "sending", "sent", "failed"))
    finally:
        store.close()


def assert_written_once(daemon: Daemon, receiver: Receiver) -> list[Incident]:
    incidents = [i for i in daemon.incidents() if i.severity == "outage"]
    assert len(incidents) == 1, [i.ref for i in incidents]
    keys = [e.key for e in incidents[0].timeline]
    assert len(keys) == len(set(keys)), keys
    assert [e.kind for e in incidents[0].timeline].count("detection") == 1
    rows = outbox(daemon)
    events = [(r["incident_id"], r["event"]) for r in rows if r["event"] == "opened"]
    assert len(events) == 1, rows
    twice = {k: n for k, n in receiver.seen.items() if n > 1}
    assert not twice, f"delivered more than once: {twice}"
    return incidents


@pytest.fixture
def two(
    lab: Lab, postgres: Any, tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[Daemon, Daemon]]:
    """`a` started first (the leader), then `b` (standby); both stopped after."""
    a, b = pair(lab, postgres, tmp_path, receiver)
    try:
        a.start()
        wait_until(lambda: role(a) == "ok leader", 10, "a to lead", a)
        b.start()
        wait_until(lambda: role(b) == "ok standby", 10, "b to stand by", b)
        assert (leader_gauge(a), leader_gauge(b)) == (1, 0)
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_kill_9_of_the_leader_the_standby_continues_the_same_incident(
    lab: Lab, two: tuple[Daemon, Daemon], receiver: Receiver
) -> None:
    a, b = two
    lab.break_("missing-symlink")
    try:
        first = new_incident(a, set())
        time.sleep(1.5)
        before = next(i for i in a.incidents() if i.id == first.id)
        killed = time.monotonic()
        a.kill9()
        wait_until(lambda: role(b) == "ok leader", 15, "b to take over", b)
        took = time.monotonic() - killed
        print(f"takeover after kill -9: {took:.2f}s (lease {LEASE:g}s)")
        assert took <= TAKEOVER_LIMIT, f"takeover took {took:.2f}s"
        assert leader_gauge(b) == 1
        time.sleep(2.0)  # b's probes go on failing: they must join, not open
        after = next(i for i in b.incidents() if i.id == first.id)
        assert after.status == "open"
        assert after.detected_at == before.detected_at
        assert {e.key for e in before.timeline} <= {e.key for e in after.timeline}
    finally:
        lab.fix("missing-symlink")
    done = resolved(b, first.id)
    assert "resolution" in [e.kind for e in done.timeline]
    assert_written_once(b, receiver)


def test_a_leader_paused_past_its_lease_writes_nothing_when_resumed(
    lab: Lab, two: tuple[Daemon, Daemon], receiver: Receiver
) -> None:
    """Split brain: SIGSTOP the leader mid-incident, let the standby take over and resolve
    it, SIGCONT. The old leader still holds the incident open in memory, with firing
    signals; it must find its lease gone before writing anything (no second resolution,
    no reopening, no second notification) and stand by."""
    a, b = two
    lab.break_("missing-symlink")
    try:
        first = new_incident(a, set())
        time.sleep(1.0)  # a records a few samples into it
        assert a.proc is not None
        a.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            wait_until(lambda: role(b) == "ok leader", 15, "b to take over", b)
            print(f"takeover from a stopped leader: {time.monotonic() - stopped:.2f}s")
            time.sleep(1.0)  # b writes its own entries meanwhile
        finally:
            lab.fix("missing-symlink")
        done = resolved(b, first.id)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: role(a) == "ok standby", 10, "a to stand by", a)
    assert (leader_gauge(a), leader_gauge(b)) == (0, 1)
    time.sleep(RECOVER_AFTER + 2.0)  # a's probes pass again: a leader would resolve
    final = next(i for i in b.incidents() if i.id == first.id)
    assert final.status == "resolved"
    assert (final.detected_at, final.resolved_at) == (first.detected_at, done.resolved_at)
    assert [e.kind for e in final.timeline].count("resolution") == 1
    assert "standby now (a)" in a.log.read_text()
    assert_written_once(b, receiver)
    resolved_rows = [r for r in outbox(b) if r["event"] == "resolved"]
    assert len(resolved_rows) == 1, resolved_rows


def test_sqlite_is_always_the_leader(lab: Lab, tmp_path: Path) -> None:
    """No store.url: one recorder, its own store; /healthz says plain `ok`, as before."""
    data = yaml.safe_load(lab.config_path.read_text())
    data["state_dir"] = str(tmp_path / "state")
    data["listen"] = f"127.0.0.1:{free_port()}"
    config = tmp_path / "recorder.yml"
    config.write_text(yaml.safe_dump(data))
    d = Daemon(config, tmp_path / "daemon.log")
    d.start()
    try:
        assert role(d) == "ok"
        assert leader_gauge(d) == 1
    finally:
        d.stop()


def test_alertmanager_pair_delivering_to_both_recorders_makes_one_incident(
    two: tuple[Daemon, Daemon], tmp_path: Path, receiver: Receiver
) -> None:
    """Two real Alertmanagers clustered on loopback, each with one webhook per recorder:
    every notification reaches both recorders twice. The leader records one incident,
    opened by the firing alert and resolved by the resolved one; the standby answers 200
    (no failed notification) and records nothing."""
    a, b = two
    binary = peers.binary  # a missing Alertmanager fails (PeerError), never skips
    binary(peers.ALERTMANAGER)
    config = alertmanager_config(a, token_file(tmp_path))
    (receiver_cfg,) = [r for r in config["receivers"] if r["name"] == "recorder"]
    (hook,) = receiver_cfg["webhook_configs"]
    receiver_cfg["webhook_configs"] = [hook, {**hook, "url": b.base + WEBHOOK_PATH}]
    gossip = [free_port(), free_port()]
    ams: list[Server] = []
    try:
        for i in (0, 1):
            ams.append(
                peers.start_alertmanager(
                    tmp_path,
                    f"alertmanager-{i}",
                    config,
                    peers.pair_flags(gossip, i),
                )
            )
        for am in ams:
            am.ready("/-/ready")
        alert = http_5xx_alert()

        def send(body: dict[str, Any]) -> None:
            for am in ams:
                response = requests.post(am.base + "/api/v2/alerts", json=[body], timeout=5)
                assert response.status_code == 200, response.text

        def delivered() -> list[float]:
            return [webhook_notifications(am) for am in ams]

        send(alert)
        incident = new_incident(a, set(), timeout=15)
        assert incident.fault == "http-5xx" and incident.hosts == ["web-02"]
        # An Alertmanager counts one notification per webhook, one per recorder; both
        # usually deliver (peer timeout 1 ms), one of them always does.
        wait_until(lambda: sum(delivered()) >= 2, 15, "the firing alert at both recorders")
        sent = delivered()
        send({**alert, "endsAt": datetime.now(UTC).isoformat()})
        wait_until(
            lambda: sum(delivered()) >= sum(sent) + 2,
            15,
            "the resolved alert at both recorders",
        )
        done = resolved(a, incident.id, timeout=20)
        assert [i.id for i in a.incidents()] == [incident.id]
        keys = [e.key for e in done.timeline]
        assert len(keys) == len(set(keys)), keys
        assert [webhook_notifications(am, "failed_") for am in ams] == [0, 0]
        assert "ok standby" == role(b)
    finally:
        for am in ams:
            am.stop()
