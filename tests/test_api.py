"""The HTTP endpoint on a real waitress server on 127.0.0.1, over a real store, real
metrics and a real incident book driven by an engine thread, as the daemon does."""

from __future__ import annotations

import json
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from probes.base import Fault, Observation, Status
from probes.facts import ClientHarm, Facts
from recorder.alertmanager import Alert
from recorder.api import BODY_BUDGET_BODIES, ApiServer, make_app, serve
from recorder.config import Config
from recorder.incidents import IncidentBook, apply_alerts
from recorder.metrics import METRIC_NAMES, Metrics
from recorder.store import Store
from tests.fixtures import HOSTS, PROBES, lab_config

TOKEN = "0123456789abcdef-lab-token"


class Engine:
    """An EngineAPI like the daemon's: one engine thread owns the incident book, and the
    HTTP threads hand alerts to it through a queue and wait. It applies them with the
    daemon's own `apply_alerts`; only the queue is the test's (so it can be held)."""

    def __init__(self, config: Config, token_file: Path) -> None:
        self.config = config
        self.token_file = token_file
        self.store = Store(config.state_path)
        self.metrics_registry = CollectorRegistry()
        self.metrics = Metrics(self.metrics_registry, store=self.store)
        self.book = IncidentBook(config, self.store)
        self.healthy: tuple[bool, str] = (True, "ok")
        self.stuck = threading.Event()  # the engine takes nothing while set
        self.submitted: list[list[Alert]] = []
        self.wait = 5.0
        self.read_token_value: str | None = None  # web.read_token_file's content
        self.history = None
        self._queue: queue.Queue[tuple[list[Alert], Future[list[int | None]]] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._loop, name="test-engine", daemon=True)
        self._thread.start()

    # EngineAPI
    def health(self) -> tuple[bool, str]:
        return self.healthy

    def token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    def read_token(self) -> str | None:
        return self.read_token_value

    def submit_alerts(self, alerts: list[Alert]) -> list[int | None]:
        reply: Future[list[int | None]] = Future()
        self._queue.put((alerts, reply))
        return reply.result(timeout=self.wait)

    # the engine thread
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            while self.stuck.is_set():
                time.sleep(0.01)
            alerts, reply = item
            self.submitted.append(alerts)
            try:
                results = apply_alerts(self.book, self.store, alerts)
                reply.set_result(results)
            except Exception as exc:  # pragma: no cover - surfaced to the HTTP thread
                reply.set_exception(exc)

    def stop(self) -> None:
        self.stuck.clear()
        self._queue.put(None)
        self._thread.join(5)

    def sweep(self, failing: dict[tuple[str, str], str] | None = None) -> None:
        """One round of every probe on every host, as real observations."""
        failing = failing or {}
        for host in HOSTS:
            for probe in PROBES:
                broken = (host, probe) in failing
                facts = Facts()
                if probe == "error_rate":
                    facts = Facts(
                        error_ratio=0.25 if broken else 0.0,
                        clients=ClientHarm(10, 4 if broken else 0),
                    )
                self.metrics.observe(
                    Observation(
                        host=host,
                        probe=probe,
                        status=Status.FAIL if broken else Status.OK,
                        summary=failing.get((host, probe), f"{probe} ok on {host}"),
                        fault=Fault.HTTP_5XX if broken else None,
                        facts=facts,
                        duration=0.01,
                    )
                )
            self.metrics.count_log_lines(host, 120)
            self.metrics.count_rotations(host, 0)
            self.metrics.count_responses(host, {"2xx": 100, "5xx": 20})


@dataclass
class Api:
    engine: Engine
    server: ApiServer
    base: str
    token_file: Path

    def url(self, path: str) -> str:
        return self.base + path

    def post(self, body: Any, token: str | None = TOKEN, **kw: Any) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            self.url("/api/v1/alertmanager"), data=data, headers=headers, timeout=10, **kw
        )

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url(path), timeout=10, **kw)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(TOKEN + "\n")
    engine = Engine(
        lab_config(tmp_path / "state", prefix="/", token_file=token_file, max_body=16 * 1024),
        token_file,
    )
    server = serve("127.0.0.1:0", make_app(engine), max_body=engine.config.alertmanager.max_body)
    try:
        yield Api(engine, server, f"http://127.0.0.1:{server.port}", token_file)
    finally:
        server.close()
        engine.stop()


def am_alert(
    name: str = "NginxHigh5xxRatio",
    instance: str = "lb-01",
    fingerprint: str = "1a2b3c4d5e6f7081",
    status: str = "firing",
    starts: str = "2026-11-23T12:00:00Z",
    ends: str = "0001-01-01T00:00:00Z",
    **labels: str,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "instance": instance, "severity": "page", **labels},
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": starts,
        "endsAt": ends,
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any]) -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname=~"Nginx.*"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "recorder",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def still_serving(api: Api) -> None:
    """The server answers and no stored incident was lost or changed by the request."""
    before = api.engine.store.list()
    assert api.get("/healthz").status_code == 200
    assert api.get("/metrics").status_code == 200
    assert [i.to_json() for i in api.engine.store.list()] == [i.to_json() for i in before]


# ---- /metrics and /healthz --------------------------------------------------------------------


def test_metrics_scrape_has_every_design_metric(api: Api) -> None:
    api.engine.sweep({("lb-01", "error_rate"): "25% of responses are 5xx"})
    assert api.post(notification(am_alert(fault="http-5xx"))).status_code == 200
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in METRIC_NAMES:
        family = families.get(name.removesuffix("_total"))
        assert family is not None and family.samples, f"{name} missing from the scrape"
        assert family.documentation

    def sample(name: str, **labels: str) -> float:
        found = [
            s.value
            for f in families.values()
            for s in f.samples
            if s.name == name and s.labels == labels
        ]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    assert sample("recorder_probe_success", host="lb-01", probe="error_rate") == 0
    assert sample("recorder_probe_success", host="web-01", probe="http") == 1
    assert sample("recorder_http_5xx_ratio", host="lb-01") == 0.25
    assert sample("recorder_affected_clients_ratio", host="lb-01") == 0.4
    assert sample("recorder_http_responses_total", host="web-02", **{"class": "5xx"}) == 20
    assert sample("recorder_incidents_open") == 1
    assert sample("recorder_incidents_opened_total", fault="http-5xx") == 1
    assert sample("recorder_detection_delay_seconds_count") == 1
    # Label values are only hosts, probes, classes, faults, the version and the two
    # webhook refusal reasons.
    allowed = {"host", "probe", "class", "fault", "version", "reason"}
    for family in families.values():
        for s in family.samples:
            assert set(s.labels) <= allowed, s


def test_metrics_in_openmetrics_when_asked(api: Api) -> None:
    api.engine.sweep()
    accept = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
    response = api.get("/metrics", headers={"Accept": accept})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


def test_head_has_no_body(api: Api) -> None:
    response = requests.head(api.url("/metrics"), timeout=5)
    assert response.status_code == 200
    assert response.content == b""


def test_healthz(api: Api) -> None:
    ok = api.get("/healthz")
    assert (ok.status_code, ok.text) == (200, "ok\n")
    api.engine.healthy = (False, "scheduler not running")
    bad = api.get("/healthz")
    assert (bad.status_code, bad.text) == (503, "scheduler not running\n")


# ---- incidents --------------------------------------------------------------------------------


def test_incidents_api_is_the_cli_json(api: Api) -> None:
    assert api.get("/api/v1/incidents").json() == []
    api.post(notification(am_alert(fault="http-5xx")))
    listed = api.get("/api/v1/incidents").json()
    assert [i["id"] for i in listed] == [1]
    assert listed[0]["status"] == "open" and listed[0]["fault"] == "http-5xx"
    assert api.get("/api/v1/incidents?status=open").json() == listed
    assert api.get("/api/v1/incidents/?status=resolved").json() == []
    assert api.get("/api/v1/incidents?service=web").json() == listed
    one = api.get("/api/v1/incidents/1").json()
    stored = api.engine.store.get(1)
    assert stored is not None and one == stored.to_json()
    assert [e["kind"] for e in one["timeline"]][:2] == ["impact-start", "detection"]
    assert api.get("/api/v1/incidents/INC-1").json() == one


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/incidents/999", 404),
        ("/api/v1/incidents/abc", 400),
        ("/api/v1/incidents/1.5", 400),
        ("/api/v1/incidents/-1", 400),
        ("/api/v1/incidents/%C2%B2", 400),  # a superscript two: a digit to str.isdigit
        ("/api/v1/incidents/99999999999999999999", 400),
        ("/api/v1/incidents/..%2F..%2Fetc%2Fpasswd", 400),
        ("/api/v1/incidents/1/timeline", 400),
        ("/api/v1/incidents?status=bogus", 400),
        ("/api/v1/nothing", 404),
        ("/metricsx", 404),
    ],
)
def test_bad_incident_requests(api: Api, path: str, status: int) -> None:
    response = api.get(path)
    assert response.status_code == status
    assert response.json()["error"]


def test_path_traversal_by_raw_request(api: Api) -> None:
    """What a client sends literally, not normalized by an HTTP library."""
    for raw in ("/api/v1/incidents/../../etc/passwd", "/api/v1/incidents/1/../2"):
        status, _ = raw_request(
            api, f"GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        assert status == 400, raw


def test_methods(api: Api) -> None:
    response = requests.post(api.url("/metrics"), timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    response = requests.delete(api.url("/api/v1/incidents/1"), timeout=5)
    assert response.status_code == 405
    response = api.get("/api/v1/alertmanager")
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


# ---- the webhook ------------------------------------------------------------------------------


def test_firing_repeated_grouped_and_resolved_alerts(api: Api) -> None:
    store = api.engine.store
    first = am_alert("NginxHigh5xxRatio", "lb-01:9113", "aaaa000000000001", fault="http-5xx")
    response = api.post(notification(first))
    assert response.status_code == 200, response.text
    assert response.json() == {"incidents": [1]}
    incident = store.get(1)
    assert incident is not None
    assert (incident.status, incident.service, incident.hosts) == ("open", "web", ["lb-01"])
    assert incident.fault == "http-5xx"
    timeline = [e.text for e in incident.timeline]

    # Alertmanager repeats the notification (repeat_interval, or a retry): nothing new.
    for _ in range(3):
        assert api.post(notification(first)).json() == {"incidents": [1]}
    again = store.get(1)
    assert again is not None and [e.text for e in again.timeline] == timeline
    assert len(store.list()) == 1

    # A group of several alerts: other hosts of the same service join the incident.
    second = am_alert("NginxProbeFailing", "web-01:9113", "aaaa000000000002", probe="http")
    third = am_alert("NginxProbeFailing", "10.9.9.9:9100", "aaaa000000000003", service="web")
    response = api.post(notification(first, second, third))
    assert response.json() == {"incidents": [1, 1, 1]}
    joined = store.get(1)
    assert joined is not None
    assert joined.hosts == ["lb-01", "web-01", "10.9.9.9"]
    assert sum("Also failing" in e.text for e in joined.timeline) == 2
    assert store.alert("aaaa000000000002") is not None

    # Resolved one by one; the incident resolves when the last signal does, at its endsAt.
    ends = "2026-11-23T12:20:00Z"
    partly = api.post(notification(_as_resolved(first, ends)))
    assert partly.json() == {"incidents": [1]}
    assert store.get(1).status == "open"  # type: ignore[union-attr]
    rest = [_as_resolved(a, ends) for a in (second, third)]
    assert api.post(notification(*rest)).json() == {"incidents": [1, 1]}
    resolved = store.get(1)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.resolved_at is not None and resolved.resolved_at.isoformat().startswith(
        "2026-11-23T12:20:00"
    )
    assert store.alert("aaaa000000000003")["status"] == "resolved"  # type: ignore[index]

    # A resolved alert nobody saw firing lands nowhere.
    stray = _as_resolved(am_alert(fingerprint="bbbb000000000009"), ends)
    assert api.post(notification(stray)).json() == {"incidents": [None]}
    assert len(store.list()) == 1


def _as_resolved(alert: dict[str, Any], ends: str) -> dict[str, Any]:
    return {**alert, "status": "resolved", "endsAt": ends}


def test_empty_group_is_accepted(api: Api) -> None:
    assert api.post(notification()).json() == {"incidents": []}
    assert api.engine.submitted == []


AUTH_CASES: list[tuple[dict[str, str], int, str]] = [
    ({}, 401, "missing bearer token (Authorization: Bearer ...)"),
    ({"Authorization": "Bearer"}, 401, "missing bearer token (Authorization: Bearer ...)"),
    ({"Authorization": f"Basic {TOKEN}"}, 401, "missing bearer token (Authorization: Bearer ...)"),
    ({"Authorization": "Bearer wrong"}, 401, "wrong bearer token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, 401, "wrong bearer token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401, "wrong bearer token"),
    ({"Authorization": "Bearer caf\xe9"}, 401, "wrong bearer token"),
    ({"Authorization": f"bearer {TOKEN}"}, 200, ""),  # the scheme is case-insensitive
]


@pytest.mark.parametrize(("headers", "status", "reason"), AUTH_CASES)
def test_webhook_authorization(api: Api, headers: dict[str, str], status: int, reason: str) -> None:
    body = json.dumps(notification(am_alert())).encode()
    response = requests.post(api.url("/api/v1/alertmanager"), data=body, headers=headers, timeout=5)
    assert response.status_code == status
    if status == 401:
        assert response.json() == {"error": reason}
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="recorder"'
        assert api.engine.submitted == []
        still_serving(api)


def test_webhook_without_a_token_file_is_disabled(api: Api) -> None:
    api.token_file.unlink()
    response = api.post(notification(am_alert()))
    assert response.status_code == 503
    assert "alertmanager.token_file" in response.json()["error"]
    assert api.engine.submitted == []
    api.token_file.write_text(TOKEN)  # written later: the next retry gets through
    assert api.post(notification(am_alert())).status_code == 200


def test_malformed_and_wrong_shapes_are_400(api: Api) -> None:
    cases: list[tuple[bytes, str]] = [
        (
            b"{not json",
            "malformed JSON at line 1 column 2: Expecting property name enclosed in double quotes",
        ),
        (b"", "empty body: expected an Alertmanager JSON notification"),
        (b"[" * 5000 + b"]" * 5000, "malformed JSON: nested too deeply"),
        (json.dumps({"status": "firing"}).encode(), "alerts: missing"),
        (
            json.dumps(notification({**am_alert(), "labels": {"instance": 1}})).encode(),
            "alerts[0].labels.instance: must be a string, got number",
        ),
    ]
    for body, reason in cases:
        response = api.post(body)
        assert response.status_code == 400
        assert response.json() == {"error": reason}
    assert api.engine.submitted == []
    still_serving(api)


def test_oversized_bodies_are_413(api: Api) -> None:
    api.post(notification(am_alert()))
    limit = api.engine.config.alertmanager.max_body
    big = notification(*(am_alert(fingerprint=f"{i:016x}") for i in range(200)))
    body = json.dumps(big).encode()
    assert len(body) > limit
    response = api.post(body)
    assert response.status_code == 413
    # Refused by waitress from the Content-Length, before the body is read, in JSON too.
    assert response.json() == {"error": f"body larger than {limit} bytes (alertmanager.max_body)"}
    # Chunked, so no Content-Length announces it: refused while it streams in.
    response = requests.post(
        api.url("/api/v1/alertmanager"),
        data=iter([body[i : i + 1000] for i in range(0, len(body), 1000)]),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 413
    # A lie: a huge Content-Length with a small body is refused before anything is read.
    status, _ = raw_request(
        api,
        b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: 99999999999\r\n\r\n{}",
    )
    assert status == 413
    # Exactly the limit is allowed (and then judged as JSON).
    exact = b"{" + b" " * (limit - 2) + b"}"
    assert api.post(exact).json() == {"error": "status: missing"}
    assert len(api.engine.submitted) == 1
    still_serving(api)


def test_the_app_enforces_a_max_body_lowered_by_a_reload(api: Api, tmp_path: Path) -> None:
    api.engine.config = lab_config(
        tmp_path / "state", prefix="/", token_file=api.token_file, max_body=1024
    )
    body = json.dumps(
        notification(*(am_alert(fingerprint=f"{i:016x}") for i in range(10)))
    ).encode()
    assert 1024 < len(body) < 16 * 1024
    response = api.post(body)
    assert response.status_code == 413
    assert response.json() == {"error": "body larger than 1024 bytes (alertmanager.max_body)"}


def test_stale_firing_after_resolution_reopens_nothing(api: Api) -> None:
    """A firing sent before the resolution and delivered after it (a retry, the other
    Alertmanager of an HA pair) must not reopen the incident; a new occurrence must."""
    store = api.engine.store
    fire = am_alert(fingerprint="cccc000000000001", fault="http-5xx")
    assert api.post(notification(fire)).json() == {"incidents": [1]}
    ends = "2026-11-23T12:10:00Z"
    assert api.post(notification(_as_resolved(fire, ends))).json() == {"incidents": [1]}
    assert api.post(notification(fire)).json() == {"incidents": [1]}
    incident = store.get(1)
    assert incident is not None and incident.status == "resolved"
    assert store.alert("cccc000000000001")["status"] == "resolved"  # type: ignore[index]
    # Resolved first, its firing late: nothing opens.
    late = am_alert(fingerprint="cccc000000000002")
    assert api.post(notification(_as_resolved(late, ends))).json() == {"incidents": [None]}
    assert api.post(notification(late)).json() == {"incidents": [None]}
    assert [i.status for i in store.list()] == ["resolved"]
    # The same alert firing again later is a new occurrence.
    again = {**fire, "startsAt": "2026-11-23T13:00:00Z"}
    (reopened,) = api.post(notification(again)).json()["incidents"]
    assert store.get(reopened).status == "open"  # type: ignore[union-attr]


def test_webhooks_cannot_take_every_worker(api: Api) -> None:
    """With the engine stuck, webhook requests hold at most all workers but two; the
    others are told to retry and /metrics and /healthz still answer."""
    api.engine.wait = 3.0
    api.engine.stuck.set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        pending = [
            pool.submit(api.post, notification(am_alert(fingerprint=f"dddd{i:012x}")))
            for i in range(4)
        ]
        # Two refusals mean both webhook slots are held (a fixed sleep let a late request
        # find a slot freed by the clear below, on a loaded machine).
        waited = time.monotonic()
        while sum(f.done() for f in pending) < 2 and time.monotonic() - waited < 10:
            time.sleep(0.02)
        started = time.monotonic()
        assert api.get("/metrics").status_code == 200
        assert api.get("/healthz").status_code == 200
        assert time.monotonic() - started < 1.0
        api.engine.stuck.clear()
        statuses = sorted(f.result().status_code for f in pending)
    # THREADS (4) workers: two slots for webhooks; two were refused at once.
    assert statuses == [200, 200, 503, 503]
    refused = [f.result() for f in pending if f.result().status_code == 503]
    assert refused[0].json() == {"error": "too many webhook requests at once; retry later"}


def test_a_stuck_engine_gives_503_and_the_alert_is_not_lost(api: Api) -> None:
    api.engine.wait = 0.3
    api.engine.stuck.set()
    response = api.post(notification(am_alert(fault="http-5xx")))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert api.get("/metrics").status_code == 200
    api.engine.stuck.clear()
    # The engine still applies it when it comes back; Alertmanager's retry deduplicates.
    assert api.post(notification(am_alert(fault="http-5xx"))).json() == {"incidents": [1]}
    assert len(api.engine.store.list()) == 1


# ---- robustness -------------------------------------------------------------------------------


def raw_request(api: Api, data: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes as they are; return the status and the whole response."""
    with socket.create_connection(("127.0.0.1", api.server.port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        while True:
            head, sep, body = reply.partition(b"\r\n\r\n")
            if sep:
                match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if match and len(body) >= int(match.group(1)):
                    break
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


def test_garbage_does_not_hurt_the_server(api: Api) -> None:
    for data in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        status, reply = raw_request(api, data)
        assert 400 <= status < 500 or status == 501, data[:60]  # 501: unknown encoding
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"], reply
    still_serving(api)


def _head_only(api: Api, head: bytes) -> tuple[int, bytes]:
    """Send a request's headers and none of the body they announce; the answer (a server
    that waits for the body answers nothing, and this fails)."""
    return raw_request(api, head, timeout=3.0)


def test_a_webhook_without_the_token_is_refused_before_its_body(api: Api, tmp_path: Path) -> None:
    """#22.1: the token is checked when the headers are complete, so a client without it
    never gets a body buffered (waitress spilled bodies over 512 KiB to temporary files)."""
    api.engine.config = lab_config(
        tmp_path / "state", prefix="/", token_file=api.token_file, max_body=1024 * 1024
    )
    api.server.set_max_body(1024 * 1024)
    webhook = b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\n"
    for extra in (
        b"Content-Length: 700000\r\n",
        b"Authorization: Bearer wrong\r\nContent-Length: 700000\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 15000\r\nExpect: 100-continue\r\n",
    ):
        status, reply = _head_only(api, webhook + extra + b"\r\n")
        assert status == 401, reply
        assert b"100 Continue" not in reply
        assert b'www-authenticate: bearer realm="recorder"' in reply.lower()
        assert b"content-security-policy" in reply.lower()
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"].startswith(
            ("missing bearer token", "wrong bearer token")
        )
    # A small refused body is read and dropped, so its client reads the answer whole.
    body = json.dumps(notification(am_alert())).encode()
    status, reply = raw_request(
        api, webhook + b"Content-Length: %d\r\n\r\n" % len(body) + body, timeout=3
    )
    assert status == 401, reply
    # Without a token file, the same: refused (503) before the body.
    api.token_file.unlink()
    status, reply = _head_only(api, webhook + b"Content-Length: 700000\r\n\r\n")
    assert status == 503 and b"alertmanager.token_file" in reply, reply
    assert api.engine.submitted == []
    refused = api.engine.metrics_registry.get_sample_value(
        "recorder_webhook_refusals_total", {"reason": "unauthorized"}
    )
    assert refused == 5
    api.token_file.write_text(TOKEN)
    still_serving(api)


def test_other_requests_may_not_send_large_bodies(api: Api) -> None:
    """Only the webhook takes a body larger than the login form's, checked on the headers."""
    token = b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    for request in (
        # Cut off at the headers: not a byte of the body is sent.
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\n\r\n",
        # Small enough to be read and dropped (within the webhook's max_body).
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n" + b"a" * 9000,
        # The webhook's path with another method is not the webhook.
        b"PUT /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\n"
        + token
        + b"Content-Length: 9000\r\n\r\n"
        + b"a" * 9000,
    ):
        status, reply = _head_only(api, request)
        assert status == 413, reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
            "error": "body larger than 8192 bytes"
        }
    # Chunked, so no length announces it: refused once it passes the limit.
    chunks = b"".join(b"1000\r\n" + b"a" * 4096 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    status, reply = raw_request(
        api,
        b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert status == 413, reply
    # A small body is still the app's to judge.
    status, reply = raw_request(
        api, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    )
    assert status == 405, reply
    still_serving(api)


def test_bodies_being_read_at_once_share_a_budget(api: Api) -> None:
    """Even with the token, at most BODY_BUDGET_BODIES full-size bodies are buffered at
    once; the next is told to retry, and a closed connection gives its share back."""
    limit = api.engine.config.alertmanager.max_body
    head = (
        b"POST /api/v1/alertmanager HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + TOKEN.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % limit
    )
    holders = []
    try:
        for _ in range(BODY_BUDGET_BODIES):
            sock = socket.create_connection(("127.0.0.1", api.server.port), timeout=5)
            sock.sendall(head + b" " * (limit // 2))  # half a body, then nothing
            holders.append(sock)
        time.sleep(0.3)
        status, reply = raw_request(api, head + b" " * limit)
        assert status == 503, reply
        assert b"retry-after: 5" in reply.lower()
        assert b"too many request bodies" in reply
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.3)
    assert api.post(notification(am_alert())).status_code == 200


def test_concurrent_clients(api: Api) -> None:
    api.engine.sweep()

    def fetch(i: int) -> int:
        path = ("/metrics", "/healthz", "/api/v1/incidents")[i % 3]
        return api.get(path).status_code

    with ThreadPoolExecutor(max_workers=24) as pool:
        statuses = list(pool.map(fetch, range(240)))
    assert statuses == [200] * 240


def test_slow_clients_do_not_starve_metrics(api: Api) -> None:
    """50 clients dribbling their headers a byte at a time hold sockets, not workers."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n"
    slow = [socket.create_connection(("127.0.0.1", api.server.port), timeout=5) for _ in range(50)]
    stop = threading.Event()

    def dribble() -> None:
        position = 0
        while not stop.is_set() and position < len(request):
            for sock in slow:
                sock.send(request[position : position + 1])
            position += 1
            time.sleep(0.03)

    feeder = threading.Thread(target=dribble)
    feeder.start()
    try:
        times = []
        for _ in range(10):
            started = time.monotonic()
            response = api.get("/metrics")
            times.append(time.monotonic() - started)
            assert response.status_code == 200
            time.sleep(0.1)
        assert max(times) < 1.0, times
        assert feeder.is_alive(), "the slow clients finished before the test measured"
    finally:
        stop.set()
        feeder.join(5)
        for sock in slow:
            sock.close()


def test_a_failing_handler_is_a_500_not_a_dead_server(api: Api) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    api.engine.health = broken  # type: ignore[method-assign]
    assert api.get("/healthz").status_code == 503  # a broken health check is unhealthy
    api.engine.store.list = lambda *a, **k: 1 / 0  # type: ignore[assignment,method-assign]
    response = api.get("/api/v1/incidents")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; see the recorder's log"}
    assert api.get("/metrics").status_code == 200


def test_close_stops_listening(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    engine = Engine(
        lab_config(tmp_path / "state", prefix="/", token_file=token_file, max_body=16 * 1024),
        token_file,
    )
    try:
        server = serve("127.0.0.1:0", make_app(engine))
        assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
        server.close()
        assert not server.alive
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)
        server.close()  # twice is fine
    finally:
        engine.stop()


def test_a_busy_port_is_a_clear_error(api: Api) -> None:
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{api.server.port}: "):
        serve(f"127.0.0.1:{api.server.port}", make_app(api.engine))


def test_ipv6_loopback(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    token_file = tmp_path / "token"
    engine = Engine(
        lab_config(tmp_path / "state", prefix="/", token_file=token_file, max_body=16 * 1024),
        token_file,
    )
    try:
        try:
            server = serve("[::1]:0", make_app(engine))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        try:
            response = requests.get(f"http://[::1]:{server.port}/healthz", timeout=5)
            assert response.status_code == 200
        finally:
            server.close()
    finally:
        engine.stop()


def _many_incidents(store: Store, n: int) -> None:
    from datetime import UTC, datetime, timedelta

    from recorder.model import Incident, IncidentStatus

    t0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    for i in range(n):
        started = t0 + timedelta(minutes=i)
        store.create_incident(
            Incident(
                id=0,
                status=IncidentStatus.RESOLVED,
                severity="outage",
                title=f"outage {i}",
                service="web",
                fault="http-5xx",
                started_at=started,
                detected_at=started + timedelta(seconds=1.5),
                resolved_at=started + timedelta(seconds=30),
                hosts=["lb-01"],
            )
        )


def test_the_incident_list_comes_in_pages(api: Api) -> None:
    _many_incidents(api.engine.store, 250)
    first = api.get("/api/v1/incidents")
    assert [i["id"] for i in first.json()] == list(range(1, 101))
    ids: list[int] = []
    url: str | None = "/api/v1/incidents?limit=120&status=resolved"
    pages = 0
    while url:
        page = api.get(url)
        assert page.status_code == 200
        ids += [i["id"] for i in page.json()]
        url = page.links.get("next", {}).get("url")
        pages += 1
    assert ids == list(range(1, 251)) and pages == 3
    for bad in ("limit=0", "limit=1001", "limit=abc", "after=-1"):
        assert api.get(f"/api/v1/incidents?{bad}").status_code == 400, bad


def test_a_scrape_reads_no_incident_rows(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Counts and the detection-delay summary come from aggregate queries: a scrape with
    # 250 incidents must not load them (it loaded every incident ever recorded).
    _many_incidents(api.engine.store, 250)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a scrape read incident rows")

    monkeypatch.setattr(Store, "_incident", refuse)
    body = api.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(body)}
    delay = {s.name: s.value for s in families["recorder_detection_delay_seconds"].samples}
    assert delay["recorder_detection_delay_seconds_count"] == 250
    assert delay["recorder_detection_delay_seconds_sum"] == pytest.approx(375.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("startsAt", "9999-12-31T23:59:59Z"),
        ("startsAt", "0002-01-01T00:00:00Z"),
        ("startsAt", "1969-12-31T23:59:59Z"),
        ("endsAt", "9999-12-31T23:59:59Z"),
    ],
)
def test_times_out_of_range_are_400_and_nothing_is_written(
    api: Api, field: str, value: str
) -> None:
    # Year 9999 gave a 500 after writing half an incident, which then broke every reader
    # in a zone east of UTC (#22.6).
    body = notification(
        {**am_alert(status="resolved" if field == "endsAt" else "firing"), field: value}
    )
    response = api.post(body)
    assert response.status_code == 400
    reason = response.json()["error"]
    assert reason.startswith(f"alerts[0].{field}: ") and "out of range" in reason, reason
    assert api.engine.submitted == []
    assert api.engine.store.list() == []
    still_serving(api)
