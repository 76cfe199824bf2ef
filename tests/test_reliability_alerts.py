"""Alertmanager payloads: missing fields, wrong types, huge bodies, deep nesting, repeated and
out-of-order firing/resolved. Parsing is fuzzed directly; delivery goes through the real
HTTP endpoint of a real daemon (run in a thread) with a real store.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.alertmanager import PayloadError, parse_payload, to_alerts
from recorder.config import parse_config
from recorder.daemon import Daemon
from recorder.store import Store
from tests.conftest import free_port

FAST = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CONFIG = parse_config(
    {
        "services": {"web": {"entrypoints": ["lb-01"], "hosts": ["lb-01", "web-01"]}},
        "hosts": {"lb-01": {"local": {}}, "web-01": {"ssh": {"address": "10.0.0.11", "user": "u"}}},
    }
)

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)

FIELDS = {
    "status": st.sampled_from(["firing", "resolved", "FIRING", "", "pending"]),
    "labels": st.dictionaries(
        st.sampled_from(["alertname", "instance", "service", "fault", "job", ""]),
        st.one_of(st.text(max_size=30), st.sampled_from(["web-01:9100", "http-5xx", "[::1]:80"])),
        max_size=5,
    ),
    "annotations": st.dictionaries(
        st.sampled_from(["summary", "description", "fault"]), st.text(max_size=50), max_size=3
    ),
    "startsAt": st.sampled_from(
        ["2026-11-23T09:00:00Z", "2026-11-23T09:00:00.123456789Z", "0001-01-01T00:00:00Z", "x"]
    ),
    "endsAt": st.sampled_from(["0001-01-01T00:00:00Z", "2026-11-23T09:05:00+03:00", "", "yes"]),
    "fingerprint": st.text(max_size=20),
    "generatorURL": st.text(max_size=20),
}


@st.composite
def alert_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Alert objects close to real ones: each field present, missing, or of a wrong type."""
    alert: dict[str, Any] = {}
    for name, good in FIELDS.items():
        choice = draw(st.integers(0, 9))
        if choice < 7:
            alert[name] = draw(good)
        elif choice < 9:
            alert[name] = draw(JSON)
    return alert


@st.composite
def payloads(draw: st.DrawFn) -> Any:
    body: dict[str, Any] = {
        "version": draw(st.sampled_from(["4", "3", 4, None])),
        "status": draw(FIELDS["status"]),
        "receiver": draw(st.one_of(st.text(max_size=10), JSON)),
        "alerts": draw(st.one_of(st.lists(alert_objects(), max_size=4), JSON)),
    }
    for key in list(body):
        if draw(st.integers(0, 9)) == 0:
            del body[key]
    return body


@FAST
@given(payload=payloads())
def test_any_payload_is_parsed_or_refused_with_a_reason(payload: Any) -> None:
    body = json.dumps(payload).encode()
    try:
        parsed = parse_payload(body)
    except PayloadError as exc:
        assert str(exc) and len(str(exc)) < 500
        return
    for alert in to_alerts(parsed, CONFIG):
        assert alert.host and alert.service and alert.fingerprint
        assert "\n" not in alert.summary and len(alert.summary) <= 300


@FAST
@given(data=st.binary(max_size=500))
def test_any_bytes_are_parsed_or_refused(data: bytes) -> None:
    try:
        parse_payload(data)
    except PayloadError as exc:
        assert str(exc)


# ---- through the real endpoint ------------------------------------------------------------------


class RunningDaemon:
    """A Daemon on its own thread, its HTTP endpoint on a free port, a token file."""

    def __init__(self, root: Path, services: bool = True) -> None:
        self.token = "test-token-" + "x" * 20
        (root / "token").write_text(self.token)
        self.port = free_port()
        self.state = root / "state"
        config = root / "recorder.yml"
        config.write_text(
            f"timezone: UTC\nstate_dir: {self.state}\nlisten: 127.0.0.1:{self.port}\n"
            + (
                "services: {web: {entrypoints: [lb-01], hosts: [lb-01, web-01]}}\n"
                if services
                else ""
            )
            + "hosts:\n  lb-01: {local: {}}\n  web-01: {local: {}}\n"
            f"alertmanager: {{token_file: {root / 'token'}, max_body: 65536}}\n"
        )
        self.daemon = Daemon(str(config))
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.get("/healthz")[0] == 200:
                break
            threading.Event().wait(0.05)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body, headers or {})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except (ConnectionError, http.client.HTTPException) as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def webhook(self, body: bytes, token: str | None = None) -> tuple[int, str]:
        return self.request(
            "POST",
            "/api/v1/alertmanager",
            body,
            {"Authorization": f"Bearer {token or self.token}", "Content-Type": "application/json"},
        )

    def stop(self) -> None:
        self.daemon.stop()
        self.thread.join(10)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    server = RunningDaemon(tmp_path_factory.mktemp("alerts"))
    yield server
    server.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[RunningDaemon]:
    """A daemon of the test's own, so incidents of one test cannot absorb another's."""
    server = RunningDaemon(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def serviceless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    """No services configured: an alert's own service label names its incident, so each
    example of a property can use a service nobody else touches."""
    server = RunningDaemon(tmp_path_factory.mktemp("alerts-free"), services=False)
    yield server
    server.stop()


def _alert(
    fingerprint: str, status: str, starts: datetime, ends: datetime | None
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": f"Alert-{fingerprint}", "instance": "lb-01", "fault": "http-5xx"},
        "annotations": {"summary": f"alert {fingerprint}"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": ends.isoformat().replace("+00:00", "Z") if ends else "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def _notification(*alerts: dict[str, Any]) -> bytes:
    firing = any(a["status"] == "firing" for a in alerts)
    return json.dumps(
        {
            "version": "4",
            "status": "firing" if firing else "resolved",
            "receiver": "recorder",
            "alerts": list(alerts),
        }
    ).encode()


HOSTILE_BODIES: dict[str, tuple[bytes, int]] = {
    "empty": (b"", 400),
    "not-json": (b"{alerts: [}", 400),
    "not-utf-8": (b'{"alerts": ["\xff"]}', 400),
    "a-list": (b"[]", 400),
    "alerts-missing": (b'{"version": "4"}', 400),
    "alerts-a-string": (b'{"alerts": "x"}', 400),
    "alert-a-number": (b'{"alerts": [1]}', 400),
    "labels-missing": (
        b'{"alerts": [{"status": "firing", "startsAt": "2026-11-23T09:00:00Z"}]}',
        400,
    ),
    "label-a-number": (
        b'{"alerts": [{"status": "firing", "labels": {"a": 1}, '
        b'"startsAt": "2026-11-23T09:00:00Z"}]}',
        400,
    ),
    "bad-time": (b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": "noon"}]}', 400),
    "nan": (b'{"alerts": NaN}', 400),
    "huge-integer": (b'{"alerts": [], "x": ' + b"9" * 5000 + b"}", 400),
    "deep-nesting": (b'{"alerts": [], "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 413),
    "deep-nesting-small": (b'{"alerts": [], "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400),
    "huge-body": (b'{"alerts": [], "x": "' + b"a" * 3_000_000 + b'"}', 413),
    "many-alerts": (
        _notification(
            *[
                _alert(f"f{i}", "firing", datetime(2026, 1, 1, tzinfo=UTC), None)
                for i in range(1001)
            ]
        ),
        413,
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
def test_hostile_webhook_bodies_are_refused_and_the_daemon_carries_on(
    running: RunningDaemon, name: str
) -> None:
    body, expected = HOSTILE_BODIES[name]
    status, text = running.webhook(body)
    if name == "huge-body" and status == 0:
        # Past waitress' own limit it answers 413 and closes while the client is still
        # sending, so the client may see the reset first. Refused either way.
        assert "reset" in text or "pipe" in text.lower(), text
    else:
        assert status == expected, (name, status, text[:300])
        assert json.loads(text)["error"], text
    assert running.get("/healthz")[0] == 200


def test_a_lying_content_length_is_refused(running: RunningDaemon) -> None:
    status, _ = running.request(
        "POST",
        "/api/v1/alertmanager",
        b"{}",
        {"Authorization": f"Bearer {running.token}", "Content-Length": "99999999"},
    )
    assert status in (0, 400, 413)  # refused outright, or the connection dropped
    assert running.get("/healthz")[0] == 200


def test_repeated_and_out_of_order_alerts_leave_one_right_incident(fresh: RunningDaemon) -> None:
    running = fresh
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    store = Store(running.state)
    try:
        before = {i.id for i in store.list()}
        fire = _notification(_alert("ooo-a", "firing", t0, None))
        # The same firing, three times (HA Alertmanager pairs both send), and a second
        # alert of the same outage: one incident.
        ids = {json.loads(running.webhook(fire)[1])["incidents"][0] for _ in range(3)}
        second = _notification(_alert("ooo-b", "firing", t0 + timedelta(minutes=1), None))
        ids.add(json.loads(running.webhook(second)[1])["incidents"][0])
        assert len(ids) == 1, ids
        (incident_id,) = ids
        # Resolved twice, then the stale firing (sent before the resolution, delivered
        # after it): nothing reopens and nothing new opens.
        for fp in ("ooo-a", "ooo-b"):
            resolved = _notification(_alert(fp, "resolved", t0, t0 + timedelta(minutes=5)))
            assert running.webhook(resolved)[0] == 200
            assert running.webhook(resolved)[0] == 200
        assert running.webhook(fire)[0] == 200
        incident = store.get(incident_id)
        assert incident is not None and incident.status == "resolved", incident
        new = [i for i in store.list() if i.id not in before and i.id != incident_id]
        assert new == [], [(i.ref, i.status, i.title) for i in new]
        texts = [e.text for e in incident.timeline]
        assert len(texts) == len(set(texts)), texts
    finally:
        store.close()


def test_resolved_before_firing_opens_nothing_that_stays_open(fresh: RunningDaemon) -> None:
    running = fresh
    # Out of order from the start: the resolution arrives first, the firing after it.
    t0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    store = Store(running.state)
    try:
        before = {i.id for i in store.list()}
        resolved = _notification(_alert("late-a", "resolved", t0, t0 + timedelta(minutes=3)))
        assert json.loads(running.webhook(resolved)[1]) == {"incidents": [None]}
        assert running.webhook(_notification(_alert("late-a", "firing", t0, None)))[0] == 200
        still_open = [i.ref for i in store.list(status="open") if i.id not in before]
        assert still_open == [], f"a stale firing left {still_open} open"
    finally:
        store.close()


def test_the_webhook_refuses_without_the_token_and_records_nothing(running: RunningDaemon) -> None:
    store = Store(running.state)
    try:
        before = len(store.list())
        body = _notification(_alert("unauth", "firing", datetime(2026, 1, 1, tzinfo=UTC), None))
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": running.token}):
            status, _ = running.request("POST", "/api/v1/alertmanager", body, headers)
            assert status == 401
        assert len(store.list()) == before
    finally:
        store.close()


@st.composite
def alert_histories(draw: st.DrawFn) -> tuple[list[tuple[str, str, int, int | None]], bool]:
    """Episodes of two alerts (firing from s to e, in minutes), each notification sent one
    to three times, delivered in any order. Returns the deliveries and whether the truth
    at the end is "something still firing"."""
    events: list[tuple[str, str, int, int | None]] = []
    still_firing = False
    for fp in ("a", "b"):
        t = 0
        episodes = draw(st.integers(1, 3))
        for k in range(episodes):
            start = t + draw(st.integers(1, 5))
            end = start + draw(st.integers(1, 5))
            t = end
            last = k == episodes - 1
            open_at_end = last and draw(st.booleans())
            events += [(fp, "firing", start, None)] * draw(st.integers(1, 3))
            if open_at_end:
                still_firing = True
            else:
                events += [(fp, "resolved", start, end)] * draw(st.integers(1, 2))
    order = draw(st.permutations(events))
    return list(order), still_firing


@settings(FAST, max_examples=40)
@given(history=alert_histories())
def test_any_delivery_order_ends_in_the_true_state(
    serviceless: RunningDaemon, history: tuple[list[tuple[str, str, int, int | None]], bool]
) -> None:
    deliveries, still_firing = history
    service = "svc-" + uuid.uuid4().hex[:12]
    t0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    for fp, status, start, end in deliveries:
        alert = _alert(
            f"{service}-{fp}",
            status,
            t0 + timedelta(minutes=start),
            t0 + timedelta(minutes=end) if end is not None else None,
        )
        alert["labels"].update(instance=f"host-{service}", service=service)
        code, text = serviceless.webhook(_notification(alert))
        assert code == 200, text
    store = Store(serviceless.state)
    try:
        mine = store.list(service=service)
    finally:
        store.close()
    open_now = [i for i in mine if i.status == "open"]
    if still_firing:
        assert len(open_now) == 1, [(i.ref, i.status) for i in mine]
    else:
        assert open_now == [], (deliveries, [(i.ref, i.status) for i in mine])


def test_the_webhook_answer_is_the_truth_when_the_engine_is_slow(
    fresh: RunningDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the engine was still applying when the wait ran out was answered 503 "did
    not take the alerts", although it was applied (and Alertmanager sent it again). A
    batch it had begun is waited for; one it had not begun is withdrawn, then 503."""
    import recorder.daemon as daemon_module

    monkeypatch.setattr(daemon_module, "ALERT_WAIT", 0.3)
    daemon = fresh.daemon
    now = datetime.now(UTC)

    # 1. Slow to apply: the answer waits and says what happened.
    real_on_alert = daemon.book.on_alert

    def slow_on_alert(**kwargs: Any) -> int | None:
        threading.Event().wait(1.0)
        return real_on_alert(**kwargs)

    monkeypatch.setattr(daemon.book, "on_alert", slow_on_alert)
    status, body = fresh.webhook(_notification(_alert("slow", "firing", now, None)))
    assert status == 200, body
    assert json.loads(body)["incidents"] != [None]
    assert len(Store(fresh.state).list()) == 1
    monkeypatch.setattr(daemon.book, "on_alert", real_on_alert)

    # 2. Never taken in time: withdrawn, so the 503 is true and nothing is applied later.
    release = threading.Event()
    real_handle = daemon._handle

    def blocked(item: Any) -> Any:
        if item is not None:
            release.wait(10)
        return real_handle(item)

    monkeypatch.setattr(daemon, "_handle", blocked)
    daemon.queue.put("wake")  # the engine now sits in `blocked` until released
    threading.Event().wait(0.2)
    assert daemon.engine_behind() == 0.0  # strings (wake-ups) are not inputs
    status, body = fresh.webhook(
        _notification(
            _alert("never", "firing", now, None)
            | {
                "labels": {
                    "alertname": "Other",
                    "instance": "web-01",
                    "fault": "nginx-down",
                    "service": "api",
                }
            }
        )
    )
    assert status == 503 and "did not take" in body, body
    # An input that has waited long: /healthz says the engine is behind.
    from concurrent.futures import Future

    aged = daemon_module._Alerts([], Future(), queued=time.monotonic() - 60)
    daemon.queue.put(aged)
    assert daemon.engine_behind() >= 59
    healthy, reason = daemon.health()
    assert not healthy and "engine behind" in reason
    status, text = fresh.get("/healthz")  # what a load balancer or systemd check sees
    assert status == 503 and "engine behind" in text, (status, text)
    release.set()
    threading.Event().wait(1.0)
    assert len(Store(fresh.state).list()) == 1
