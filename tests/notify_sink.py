"""A real HTTP receiver on loopback for notification tests: it checks what a webhook,
Slack or PagerDuty endpoint would check (signature and its age, the documented fields) and
keeps every request, accepted or not."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# docs/notifications.md, version 1
WEBHOOK_FIELDS = {"version", "delivery_id", "event", "event_at", "summary", "text", "incident"}
INCIDENT_FIELDS = {
    "id",
    "ref",
    "status",
    "title",
    "service",
    "hosts",
    "fault",
    "planned",
    "started_at",
    "detected_at",
    "resolved_at",
    "closed_at",
    "affected",
    "root_causes",
    "link",
}
# https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
PD_FIELDS = {"routing_key", "event_action", "dedup_key"}
PD_PAYLOAD = {"summary", "source", "severity"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    status: int = 0  # what the sink answered


class Sink:
    """POSTs to /webhook, /slack and /pagerduty. `status` is what it answers; `hang` makes
    it sleep that long first. `secret` enables signature checking on /webhook."""

    def __init__(self, port: int | None = None, secret: str | None = None) -> None:
        self.port = port or free_port()
        self.secret = secret
        self.status = 200
        self.hang = 0.0
        self.received: list[Received] = []  # answered requests
        self.started = 0  # requests begun (a hanging one counts before it answers)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                sink.started += 1
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                got = Received(self.path, headers, {})
                try:
                    got.body = json.loads(raw)
                except ValueError:
                    got.problems.append("not JSON")
                got.problems += sink.check(self.path, headers, raw, got.body)
                if sink.hang:
                    time.sleep(sink.hang)
                status = 400 if got.problems else sink.status
                got.status = status
                sink.received.append(got)
                try:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b'{"status":"success"}' if status < 300 else b"no")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the recorder gave up waiting (a hanging receiver): expected

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def check(self, path: str, headers: dict[str, str], raw: bytes, body: Any) -> list[str]:
        problems: list[str] = []
        if not isinstance(body, dict):
            return ["body is not an object"]
        if path == "/webhook":
            if set(body) != WEBHOOK_FIELDS:
                problems.append(f"webhook fields {sorted(body)}")
            if body.get("event") == "test":  # `recorder notify test`: no incident behind it
                if body.get("incident") is not None:
                    problems.append("a test message with an incident")
            elif set(body.get("incident", {})) != INCIDENT_FIELDS:
                problems.append(f"incident fields {sorted(body.get('incident', {}))}")
            if body.get("version") != 1:
                problems.append("version")
            if headers.get("x-recorder-delivery") != body.get("delivery_id"):
                problems.append("delivery header")
            if self.secret:
                ts = headers.get("x-recorder-timestamp", "")
                mac = hmac.new(self.secret.encode(), ts.encode() + b"." + raw, hashlib.sha256)
                want = "sha256=" + mac.hexdigest()
                if not hmac.compare_digest(want, headers.get("x-recorder-signature-256", "")):
                    problems.append("bad signature")
                if not ts.isdigit() or abs(time.time() - int(ts)) > 300:
                    problems.append("stale timestamp")
        elif path == "/slack":
            if not isinstance(body.get("text"), str) or not body["text"]:
                problems.append("slack text")
            for block in body.get("blocks", []):
                if block.get("type") not in ("header", "section", "context", "divider"):
                    problems.append(f"slack block {block.get('type')}")
            if not body.get("blocks"):
                problems.append("slack blocks")
        elif path == "/pagerduty":
            if not PD_FIELDS <= set(body):
                problems.append(f"pagerduty fields {sorted(body)}")
            if body.get("event_action") not in ("trigger", "resolve", "acknowledge"):
                problems.append("event_action")
            if body.get("event_action") == "trigger":
                payload = body.get("payload", {})
                if not PD_PAYLOAD <= set(payload):
                    problems.append(f"pagerduty payload {sorted(payload)}")
                if payload.get("severity") not in ("critical", "error", "warning", "info"):
                    problems.append("severity")
                if len(payload.get("summary", "")) > 1024:
                    problems.append("summary too long")
        return problems

    def accepted(self, path: str | None = None) -> list[Received]:
        return [r for r in self.received if r.status < 300 and (path is None or r.path == path)]
