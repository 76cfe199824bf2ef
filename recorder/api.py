"""The HTTP endpoint: /metrics, /healthz, the incidents API and the Alertmanager webhook.

Served by waitress: its asyncore loop reads every request completely (headers and body,
bounded by `max_request_body_size`) before a worker thread sees it, so slow or stalled
clients cost a socket each, never one of the few worker threads, and /metrics keeps
answering. The standard library's servers give each connection a thread or block on it.
A body is read only once its headers are admitted (`ApiApp.refuse_body`, called by the
server as soon as the headers are complete): the webhook's needs its token, any other a
small size, and all bodies being read at once share a budget, so a client without the
token costs a socket for a moment, never a buffered body or a temporary file.

Routes:

    GET  /                          the incidents page (HTML; web/pages.py)
    GET  /incidents/{id}            one incident's page
    GET  /postmortems[/{id}]        closed incidents and their final documents
    GET  /status                    every check now, and its availability (recorder/history.py),
                                    100 hosts a page
    GET  /static/style.css          the pages' one stylesheet
    GET  /login, POST /login        the read token as a cookie (only with web.read_token_file)
    GET  /metrics                   Prometheus text (OpenMetrics when asked for)
    GET  /healthz                   200 "ok", or 503 with the reason
    GET  /api/v1/incidents          like `recorder incidents list --json`; ?status=, ?service=,
                                    a page: ?limit= (100, at most 1000) and ?after=ID, with
                                    a `Link: <...>; rel="next"` header while more follow
    GET  /api/v1/incidents/{id}     like `recorder incidents show ID --json`; 3 or INC-3
    POST /api/v1/alertmanager       the Alertmanager webhook (bearer token)

Errors are JSON `{"error": "<reason>"}` (plain text on /healthz, HTML on pages). Nothing
a client sends reaches the engine unchecked, and any failure in a handler is a 500 for
that request only.

Every response carries the security headers (a CSP that allows no script and nothing from
elsewhere, nosniff, no framing). With `web.read_token_file` set, everything but /healthz,
the login form, the stylesheet and the webhook (which has its own token) needs the read
token: `Authorization: Bearer TOKEN`, or the cookie the login form sets.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlencode
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import waitress.channel
import waitress.parser
import waitress.server
import waitress.task
import waitress.trigger
import waitress.utilities
import waitress.wasyncore
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.exposition import choose_encoder

from recorder.alertmanager import Alert, PayloadError, parse_payload, to_alerts
from recorder.config import Config, split_listen
from recorder.history import History
from recorder.model import IncidentStatus
from recorder.store import Store, StoreError
from recorder.web import pages

log = logging.getLogger("recorder.api")

WEBHOOK_PATH = "/api/v1/alertmanager"
INCIDENTS_PATH = "/api/v1/incidents"
PAGE_DEFAULT = 100  # incidents per page of the list: one answer stays small however many
PAGE_MAX = 1000
_INCIDENT_ID = re.compile(r"(?:INC-)?([0-9]{1,12})", re.IGNORECASE)
_STATUSES = tuple(str(s) for s in IncidentStatus)

# Waitress settings. A request reaches a worker only once fully read, so a few workers
# serve many clients. Few is also faster: the handlers are short and hold the GIL, and
# with 8 workers instead of 4, a newcomer's /healthz under 200 busy keep-alive clients
# took 2-4 times longer (measured on 2 cores). The connection limit bounds the sockets
# slow clients can hold (under systemd's default LimitNOFILE of 1024); idle connections
# are dropped after the channel timeout.
THREADS = 4
CONNECTION_LIMIT = 512
CHANNEL_TIMEOUT = 30
MAX_HEADER = 64 * 1024
# Bodies: the webhook's up to alertmanager.max_body with its token; any other request's
# (the login form) up to FORM_BODY. A refused request's body of at most DRAIN_BODY is read
# and dropped, so that its client gets the answer rather than a reset; a larger one is cut
# off. Bodies being read at once may hold BODY_BUDGET_BODIES full-size webhook bodies in
# all; past that, 503 and Alertmanager retries.
FORM_BODY = 8192
DRAIN_BODY = 64 * 1024
BODY_BUDGET_BODIES = 16

# On every response: nothing but this server's stylesheet and images loads, no script
# runs, forms post only here, and no other site may frame a page.
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
COOKIE = "recorder_read"
HTML = "text/html; charset=utf-8"
# Open whatever the read token: health for load balancers, what the login page needs, and
# the webhook, which checks its own token.
OPEN_PATHS = frozenset(
    {"/healthz", "/login", "/static/style.css", "/static/favicon.svg", "/favicon.ico", WEBHOOK_PATH}
)
# Unknown paths under these answer JSON, as their neighbours do (for scripts and scrapers);
# every other unknown path gets an HTML page.
MACHINE_PATHS = ("/api/", "/metrics", "/healthz")
_PAGE_ID = re.compile(r"^/(incidents|postmortems)/(?P<id>[^/]+)$")


class EngineAPI(Protocol):
    """What the HTTP layer needs from the daemon. Called from the server's threads."""

    config: Config  # read live: a reload changes the webhook's mapping and limits
    store: Store
    metrics_registry: CollectorRegistry

    @property
    def history(self) -> History | None:
        """Probe history for /status; None when none is kept."""
        ...

    def health(self) -> tuple[bool, str]:
        """(True, "ok"), or (False, reason) when the scheduler or the store is not well."""
        ...

    def submit_alerts(self, alerts: list[Alert]) -> list[int | None]:
        """Hand alerts to the engine and wait: the incident id each landed in (None for a
        resolved alert never seen). Raises TimeoutError when the engine does not answer."""
        ...

    def token(self) -> str | None:
        """The webhook's bearer token (from alertmanager.token_file); None when there is
        none, which disables the webhook."""
        ...

    def read_token(self) -> str | None:
        """The read token (web.read_token_file); None when reads are open (loopback)."""
        ...


@dataclass
class Response:
    status: str
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(data: Any, status: str = "200 OK") -> Response:
    body = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode("utf-8") + b"\n"
    return Response(status, body)


def html_response(text: str, status: str = "200 OK") -> Response:
    return Response(status, text.encode("utf-8"), HTML)


def error(status: str, reason: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(
        status,
        json.dumps({"error": reason}, ensure_ascii=False).encode("utf-8") + b"\n",
        headers=headers or [],
    )


class ApiApp:
    """The WSGI application over an engine."""

    def __init__(self, engine: EngineAPI, threads: int = THREADS) -> None:
        self.engine = engine
        # Webhook requests wait for the engine (up to its timeout). They may hold all but
        # two workers, so /metrics and /healthz always have one; the rest get a 503 that
        # Alertmanager retries.
        self._webhook_slots = threading.BoundedSemaphore(max(1, threads - 2))
        # Refusals are counted, not logged one by one: a client without the token (or a
        # token file that cannot be read) would otherwise write a log line per request.
        self.refusals = Counter(
            "recorder_webhook_refusals_total",
            "Webhook requests refused before their body was read: reason=disabled (no "
            "readable alertmanager.token_file) or unauthorized (missing or wrong token)",
            ["reason"],
            registry=None,
        )
        for reason in ("disabled", "unauthorized"):
            self.refusals.labels(reason)
        try:
            engine.metrics_registry.register(self.refusals)
        except ValueError:
            pass  # a second app over the same registry: the first one's counter is shown
        # path -> (allowed methods, handler); incident ids are matched separately.
        self.routes = {
            "/": (("GET", "HEAD"), self.incidents_page),
            "/postmortems": (("GET", "HEAD"), self.postmortems_page),
            "/status": (("GET", "HEAD"), self.status_page),
            "/static/style.css": (("GET", "HEAD"), self.stylesheet),
            # Browsers ask for /favicon.ico whatever the page says; both get the icon.
            "/static/favicon.svg": (("GET", "HEAD"), self.favicon),
            "/favicon.ico": (("GET", "HEAD"), self.favicon),
            "/login": (("GET", "HEAD", "POST"), self.login),
            "/metrics": (("GET", "HEAD"), self.metrics),
            "/healthz": (("GET", "HEAD"), self.healthz),
            INCIDENTS_PATH: (("GET", "HEAD"), self.incidents),
            WEBHOOK_PATH: (("POST",), self.alertmanager),
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "") or "/")
        try:
            response = self.guard(method, path, environ) or self.route(method, path, environ)
        except Exception:
            log.exception("error handling %s %.200r", method, path)
            response = error("500 Internal Server Error", "internal error; see the recorder's log")
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            *SECURITY_HEADERS,
            *response.headers,
        ]
        start_response(response.status, headers)
        # Method, path and status only: never headers (the webhook's token) or bodies.
        log.debug(
            "%s %.200r %s %dB %.1fms",
            method,
            path,
            response.status.split()[0],
            len(response.body),
            (time.monotonic() - started) * 1000,
        )
        return [b"" if method == "HEAD" else response.body]

    def guard(self, method: str, path: str, environ: WSGIEnvironment) -> Response | None:
        """None when the request may go on; else the refusal (a login page for pages)."""
        token = self.engine.read_token()
        if not token or path in OPEN_PATHS or _has_read_token(environ, token):
            return None
        if path == "/metrics" or path.startswith("/api/"):
            return error(
                "401 Unauthorized",
                "the read token is required (Authorization: Bearer ...)",
                [("WWW-Authenticate", 'Bearer realm="recorder"')],
            )
        query = str(environ.get("QUERY_STRING", ""))
        target = path + (f"?{query}" if query else "")
        return Response("303 See Other", headers=[("Location", "/login?next=" + quote(target))])

    def route(self, method: str, path: str, environ: WSGIEnvironment) -> Response:
        path = _route_path(path)
        page = _PAGE_ID.match(path)
        if page:
            if method not in ("GET", "HEAD"):
                return _not_allowed(("GET", "HEAD"))
            return self.incident_or_postmortem(page.group(1), page.group("id"))
        if path.startswith(INCIDENTS_PATH + "/"):
            allowed: tuple[str, ...] = ("GET", "HEAD")
            if method not in allowed:
                return _not_allowed(allowed)
            return self.incident(path[len(INCIDENTS_PATH) + 1 :])
        entry = self.routes.get(path)
        if entry is None:
            if path.startswith(MACHINE_PATHS):
                return error("404 Not Found", f"no such resource: {path[:200]}")
            # Anything else is where a person (a mistyped or stale link) would be: a page.
            return self._page_error("404 Not Found", f"no page at {path[:200]}")
        allowed, handler = entry
        if method not in allowed:
            return _not_allowed(allowed)
        return handler(environ)

    # ---- handlers -----------------------------------------------------------------------

    def incidents_page(self, environ: WSGIEnvironment) -> Response:
        try:
            query = parse_qs(
                str(environ.get("QUERY_STRING", "")), keep_blank_values=True, max_num_fields=20
            )
        except ValueError as exc:
            return self._page_error("400 Bad Request", f"invalid query string: {exc}")
        try:
            return html_response(
                pages.incidents_page(
                    self.engine.store,
                    self.engine.config,
                    service=_single(query, "service") or "",
                    status=_single(query, "status") or "",
                    fault=_single(query, "fault") or "",
                    page=_page_number(query),
                )
            )
        except (sqlite3.Error, StoreError) as exc:
            return self._page_error("503 Service Unavailable", f"cannot read the store: {exc}")

    def incident_or_postmortem(self, kind: str, raw_id: str) -> Response:
        match = _INCIDENT_ID.fullmatch(raw_id)
        if match is None:
            return self._page_error("404 Not Found", f"no incident {raw_id[:40]}")
        try:
            found = self.engine.store.get(int(match.group(1)))
        except (sqlite3.Error, StoreError) as exc:
            return self._page_error("503 Service Unavailable", f"cannot read the store: {exc}")
        if found is None:
            return self._page_error("404 Not Found", f"no incident {raw_id[:40]}")
        config = self.engine.config
        if kind == "incidents":
            return html_response(pages.incident_page(found, config))
        try:
            return html_response(pages.postmortem_page(found, config))
        except pages.NotFound as exc:
            return self._page_error("404 Not Found", str(exc))

    def postmortems_page(self, environ: WSGIEnvironment) -> Response:
        try:
            query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=20)
        except ValueError as exc:
            return self._page_error("400 Bad Request", f"invalid query string: {exc}")
        try:
            return html_response(
                pages.postmortems_page(self.engine.store, self.engine.config, _page_number(query))
            )
        except (sqlite3.Error, StoreError) as exc:
            return self._page_error("503 Service Unavailable", f"cannot read the store: {exc}")

    def status_page(self, environ: WSGIEnvironment) -> Response:
        try:
            query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=20)
        except ValueError as exc:
            return self._page_error("400 Bad Request", f"invalid query string: {exc}")
        return html_response(
            pages.status_page(self.engine.history, self.engine.config, _page_number(query))
        )

    def stylesheet(self, environ: WSGIEnvironment) -> Response:
        return Response("200 OK", pages.static("style.css"), "text/css; charset=utf-8")

    def favicon(self, environ: WSGIEnvironment) -> Response:
        return Response("200 OK", pages.static("favicon.svg"), "image/svg+xml")

    def login(self, environ: WSGIEnvironment) -> Response:
        token = self.engine.read_token()
        config = self.engine.config
        if not token:
            return html_response(
                pages.message_page(config, "No sign-in needed", "These pages are open here.")
            )
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method != "POST":
            query = parse_qs(str(environ.get("QUERY_STRING", "")), max_num_fields=5)
            return html_response(pages.login_page(config, _safe_next(_single(query, "next"))))
        try:
            length = min(int(str(environ.get("CONTENT_LENGTH") or "0")), 8192)
        except ValueError:
            return self._page_error("400 Bad Request", "invalid Content-Length")
        body = environ["wsgi.input"].read(length).decode("utf-8", "replace")
        form = parse_qs(body, max_num_fields=5)
        next_path = _safe_next(_single(form, "next"))
        given = (_single(form, "token") or "").strip()
        if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            return html_response(pages.login_page(config, next_path, failed=True), "403 Forbidden")
        secure = "; Secure" if config.base_url.startswith("https:") else ""
        cookie = f"{COOKIE}={_cookie_value(token)}; Path=/; HttpOnly; SameSite=Strict{secure}"
        return Response("303 See Other", headers=[("Location", next_path), ("Set-Cookie", cookie)])

    def _page_error(self, status: str, text: str) -> Response:
        title = status.split(" ", 1)[1]
        return html_response(pages.message_page(self.engine.config, title, text), status)

    def metrics(self, environ: WSGIEnvironment) -> Response:
        encoder, content_type = choose_encoder(str(environ.get("HTTP_ACCEPT", "")))
        return Response("200 OK", encoder(self.engine.metrics_registry), content_type)

    def healthz(self, environ: WSGIEnvironment) -> Response:
        try:
            ok, reason = self.engine.health()
        except Exception as exc:  # a broken health check is itself unhealthy
            log.exception("health check failed")
            ok, reason = False, f"health check failed: {type(exc).__name__}"
        status = "200 OK" if ok else "503 Service Unavailable"
        text = "ok" if ok else reason
        return Response(status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8")

    def incidents(self, environ: WSGIEnvironment) -> Response:
        try:
            query = parse_qs(
                str(environ.get("QUERY_STRING", "")), keep_blank_values=True, max_num_fields=20
            )
        except ValueError as exc:
            return error("400 Bad Request", f"invalid query string: {exc}")
        status = _single(query, "status")
        service = _single(query, "service")
        if status is not None and status not in _STATUSES:
            return error(
                "400 Bad Request",
                f"invalid status {status[:40]!r}: expected one of {', '.join(_STATUSES)}",
            )
        try:
            limit = int(_single(query, "limit") or PAGE_DEFAULT)
            after = int(_single(query, "after") or 0)
        except ValueError:
            return error("400 Bad Request", "limit and after must be whole numbers")
        if not 1 <= limit <= PAGE_MAX or after < 0:
            return error("400 Bad Request", f"limit must be 1 to {PAGE_MAX} and after at least 0")
        try:
            found = self.engine.store.list(
                status=status or None, service=service or None, after=after, limit=limit + 1
            )
        except (sqlite3.Error, StoreError) as exc:
            return _store_unavailable(exc)
        response = json_response([i.to_json() for i in found[:limit]])
        if len(found) > limit:
            # RFC 8288: the next page starts after the last id of this one.
            params = {"limit": str(limit), "after": str(found[limit - 1].id)}
            if status:
                params["status"] = status
            if service:
                params["service"] = service
            response.headers.append(("Link", f'<{INCIDENTS_PATH}?{urlencode(params)}>; rel="next"'))
        return response

    def incident(self, raw_id: str) -> Response:
        match = _INCIDENT_ID.fullmatch(raw_id)
        if match is None:
            return error(
                "400 Bad Request",
                f"invalid incident id {raw_id[:40]!r}: expected a number such as 3 or INC-3",
            )
        try:
            found = self.engine.store.get(int(match.group(1)))
        except (sqlite3.Error, StoreError) as exc:
            return _store_unavailable(exc)
        if found is None:
            return error("404 Not Found", f"no incident {raw_id}")
        return json_response(found.to_json())

    def alertmanager(self, environ: WSGIEnvironment) -> Response:
        denied = self._authorize(environ)
        if denied is not None:
            return denied
        max_body = self.engine.config.alertmanager.max_body
        try:
            length = int(str(environ.get("CONTENT_LENGTH") or "0"))
        except ValueError:
            return error("400 Bad Request", "invalid Content-Length")
        if length > max_body:
            return _too_large(max_body)
        # waitress has buffered the whole body already (refusing more than max_body);
        # reading one byte past the limit catches a server without that guard.
        body = environ["wsgi.input"].read(max_body + 1)
        if len(body) > max_body:
            return _too_large(max_body)
        try:
            payload = parse_payload(body)
        except PayloadError as exc:
            return error("400 Bad Request", str(exc))
        alerts = to_alerts(payload, self.engine.config)
        if not alerts:
            return json_response({"incidents": []})
        if not self._webhook_slots.acquire(blocking=False):
            return error(
                "503 Service Unavailable",
                "too many webhook requests at once; retry later",
                [("Retry-After", "5")],
            )
        try:
            incidents = self.engine.submit_alerts(alerts)
        except TimeoutError:
            log.error("webhook: the engine did not take %d alerts in time", len(alerts))
            return error(
                "503 Service Unavailable",
                "the recorder's engine is busy and did not take the alerts; retry later",
                [("Retry-After", "10")],
            )
        except (sqlite3.Error, StoreError, OSError) as exc:
            log.error("webhook: cannot record %d alerts: %s", len(alerts), exc)
            return error("503 Service Unavailable", f"cannot record the alerts now: {exc}")
        finally:
            self._webhook_slots.release()
        log.info(
            "webhook: %d alerts from receiver %.60r (%s) -> incidents %s",
            len(alerts),
            payload.receiver,
            payload.status,
            incidents,
        )
        return json_response({"incidents": incidents})

    def body_limit(self, method: str, path: str) -> int:
        """The largest body a request to `path` may send."""
        if method == "POST" and _route_path(path) == WEBHOOK_PATH:
            return int(self.engine.config.alertmanager.max_body)
        return FORM_BODY

    def refuse_body(
        self, method: str, path: str, authorization: str, length: int | None
    ) -> Response | None:
        """The server calls this when a request's headers are complete and announce a body
        (`length`, or None when chunked), before reading a byte of it: the refusal, or None
        to read it. Runs on the server's loop thread, so it is quick and reads no store."""
        limit = self.body_limit(method, path)
        if limit != FORM_BODY:  # the webhook: nothing is read without the token
            denied = self._authorize({"HTTP_AUTHORIZATION": authorization})
            if denied is not None:
                return denied
            if length is not None and length > limit:
                return _too_large(limit)
        elif length is not None and length > limit:
            return error("413 Content Too Large", f"body larger than {limit} bytes")
        return None

    def _authorize(self, environ: WSGIEnvironment) -> Response | None:
        token = self.engine.token()
        if not token:
            # Not the client's fault, and Alertmanager retries a 503: once the operator
            # writes the token file, the notifications still arrive.
            self.refusals.labels("disabled").inc()
            return error(
                "503 Service Unavailable",
                "the webhook is disabled: alertmanager.token_file is not set or not readable",
            )
        given = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, credentials = given.strip().partition(" ")
        challenge = [("WWW-Authenticate", 'Bearer realm="recorder"')]
        if scheme.lower() != "bearer" or not credentials.strip():
            self.refusals.labels("unauthorized").inc()
            return error(
                "401 Unauthorized", "missing bearer token (Authorization: Bearer ...)", challenge
            )
        # Constant time, on bytes: compare_digest refuses non-ASCII str.
        if not hmac.compare_digest(
            credentials.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
        ):
            self.refusals.labels("unauthorized").inc()
            return error("401 Unauthorized", "wrong bearer token", challenge)
        return None


def _route_path(path: str) -> str:
    """A path as routes are matched: without a trailing slash."""
    if len(path) > 1:
        return path.rstrip("/") or "/"
    return path


def _cookie_value(token: str) -> str:
    """What the cookie holds: derived from the token, so the cookie is not the token a
    scraper or a script would send, and changing the token signs everyone out."""
    return hmac.new(token.encode("utf-8"), b"recorder read cookie", hashlib.sha256).hexdigest()


def _has_read_token(environ: WSGIEnvironment, token: str) -> bool:
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return hmac.compare_digest(
            credentials.strip().encode("utf-8", "replace"), token.encode("utf-8", "replace")
        )
    expected = _cookie_value(token)
    for part in str(environ.get("HTTP_COOKIE", "")).split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and hmac.compare_digest(
            value.encode("utf-8", "replace"), expected.encode()
        ):
            return True
    return False


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path on this server only. Never `//elsewhere`, nor
    a backslash, space or control character (browsers drop tabs and newlines from a URL,
    so `/<TAB>/elsewhere` is `//elsewhere`; CR/LF would also split the header)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or any(c == "\\" or ord(c) <= 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
    ):
        return "/"
    return value


def _page_number(query: dict[str, list[str]]) -> int:
    value = _single(query, "page") or "1"
    return int(value) if value.isdigit() and len(value) < 7 else 1


def _single(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _not_allowed(allowed: tuple[str, ...]) -> Response:
    return error(
        "405 Method Not Allowed",
        f"method not allowed; use {' or '.join(allowed)}",
        [("Allow", ", ".join(allowed))],
    )


def _too_large(max_body: int) -> Response:
    return error(
        "413 Content Too Large",
        f"body larger than {max_body} bytes (alertmanager.max_body)",
    )


def _store_unavailable(exc: BaseException) -> Response:
    log.error("api: cannot read the store: %s", exc)
    return error("503 Service Unavailable", f"cannot read the store: {exc}")


def make_app(engine: EngineAPI, threads: int = THREADS) -> WSGIApplication:
    """The WSGI app; `threads` is the server's worker count (see ApiApp's webhook slots)."""
    return ApiApp(engine, threads)


# ---- the server -------------------------------------------------------------------------------


class _Refusal(waitress.utilities.Error):  # type: ignore[misc]
    """A request refused from its headers, answered with the app's own response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response
        code, _, reason = response.status.partition(" ")
        self.code, self.reason = int(code), reason


class _BodyGate:
    """Shared by a server's connections: asks the app whether a request's body may be
    read once its headers are complete, and bounds the body bytes being read at once."""

    def __init__(self, app: ApiApp | None) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.reserved = 0  # bytes promised to bodies being read or waiting for a worker

    def admit(self, request: _GatedRequest) -> tuple[Response | None, int]:
        """(refusal or None, the most this body may hold) for a request that has a body."""
        method, path = str(request.command).upper(), str(request.path)
        length = None if request.chunked else int(request.content_length)
        max_body = int(request.adj.max_request_body_size) - 1
        if self.app is None:
            return None, max_body
        authorization = str(request.headers.get("AUTHORIZATION", ""))
        refusal = self.app.refuse_body(method, path, authorization, length)
        limit = min(self.app.body_limit(method, path), max_body)
        if refusal is None and not self.reserve(request, limit if length is None else length):
            refusal = error(
                "503 Service Unavailable",
                "too many request bodies being read at once; retry later",
                [("Retry-After", "5")],
            )
        return refusal, limit

    def reserve(self, request: _GatedRequest, size: int) -> bool:
        budget = BODY_BUDGET_BODIES * (int(request.adj.max_request_body_size) - 1)
        with self._lock:
            if self.reserved + size > budget:
                return False
            self.reserved += size
            request.reserved = size
        return True

    def release(self, request: _GatedRequest) -> None:
        with self._lock:
            self.reserved -= request.reserved
            request.reserved = 0


class _GatedRequest(waitress.parser.HTTPRequestParser):  # type: ignore[misc]
    """waitress' request parser, stopping at the end of the headers to ask the gate
    whether the body may be read. A refused body is never buffered: up to DRAIN_BODY of it
    is read and dropped (its client then reads the answer), a larger one is cut off."""

    reserved = 0  # bytes of the gate's budget this request holds
    discard = 0  # bytes of a refused body still to read and drop
    limit = 0  # the most this body may hold (checked as a chunked body streams in)
    expect = False  # the client had asked for "100 Continue"

    def __init__(self, adj: Any, gate: _BodyGate) -> None:
        super().__init__(adj)
        self.gate = gate

    def received(self, data: bytes) -> int:
        if self.discard:
            dropped = min(self.discard, len(data))
            self.discard -= dropped
            self.completed = not self.discard
            return dropped
        had_headers = self.headers_finished
        consumed = int(super().received(data))
        if self.body_rcv is None:
            return consumed
        if had_headers:
            if self.error is None and self.chunked and len(self.body_rcv) > self.limit:
                self._refuse(error("413 Content Too Large", f"body larger than {self.limit} bytes"))
                self.completed = True
            return consumed
        too_large = isinstance(self.error, waitress.utilities.RequestEntityTooLarge)
        if self.headers_finished and (self.error is None or too_large):
            # Asked even when waitress found the length over its limit, so that a client
            # without the webhook's token learns only that, and a page's limit is its own.
            refusal, self.limit = self.gate.admit(self)
            if refusal is not None:
                self._refuse(refusal)
                if not self.chunked and self.content_length <= DRAIN_BODY and not self.expect:
                    self.discard = int(self.content_length)
                self.completed = not self.discard
        return consumed

    def _refuse(self, refusal: Response) -> None:
        self.error = _Refusal(refusal)
        # A client waiting for "100 Continue" gets the refusal instead, and sends nothing.
        self.expect = bool(getattr(self, "expect_continue", False))
        self.expect_continue = False
        self.close()
        self.body_rcv = None

    def close(self) -> None:
        self.gate.release(self)
        super().close()


class _JsonErrorTask(waitress.task.ErrorTask):  # type: ignore[misc]
    """Waitress' own refusals (a body over the limit, malformed HTTP) as JSON, like the
    app's: `{"error": "..."}` instead of its text/plain page; the gate's refusals as the
    app wrote them."""

    def execute(self) -> None:
        err = self.request.error
        if isinstance(err, _Refusal):
            response = err.response
            body = response.body
            self.response_headers.extend(
                [
                    ("Content-Type", response.content_type),
                    ("Cache-Control", "no-store"),
                    *SECURITY_HEADERS,
                    *response.headers,
                ]
            )
        else:
            if err.code == 413:
                limit = int(self.channel.server.adj.max_request_body_size) - 1
                reason = f"body larger than {limit} bytes (alertmanager.max_body)"
            else:
                reason = f"{err.reason}: {err.body}"
            body = json.dumps({"error": reason}).encode("utf-8") + b"\n"
            self.response_headers.append(("Content-Type", "application/json"))
        self.status = f"{err.code} {err.reason}"
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(waitress.channel.HTTPChannel):  # type: ignore[misc]
    error_task_class = _JsonErrorTask

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        gate = getattr(server, "body_gate", None) or _BodyGate(None)
        self.parser_class = functools.partial(_GatedRequest, gate=gate)
        super().__init__(server, sock, addr, adj, map)

    def del_channel(self, map: Any = None) -> None:
        # A request cut off mid-body gives back its share of the budget (and its buffer's
        # temporary file) now, not when the garbage collector finds it.
        request: _GatedRequest | None = getattr(self, "request", None)
        if request is not None:
            self.request = None
            request.close()
        super().del_channel(map)


class ApiServer:
    """A running waitress server on its own thread."""

    def __init__(self, server: Any, socket_map: dict[int, Any], listen: str) -> None:
        self._server = server
        self._map = socket_map
        self.listen = listen
        if hasattr(server, "effective_port"):
            self.host, self.port = str(server.effective_host), int(server.effective_port)
        else:  # a MultiSocketServer: a name that resolved to several addresses
            self.host, self.port = server.effective_listen[0]
        self._stopping = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="recorder-http", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # waitress' own run() loops until its socket map is empty; this loop can be told
        # to stop, so that closing never happens under the loop's feet (see close()).
        timeout = float(self._server.adj.asyncore_loop_timeout)
        while not self._stopping.is_set():
            try:
                waitress.wasyncore.loop(timeout=timeout, map=self._map, use_poll=True, count=1)
            except Exception:  # one bad event must not end the server
                log.exception("error in the HTTP server loop")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def set_max_body(self, max_body: int) -> None:
        """Apply a new body limit (a reload): waitress reads its adjustments, shared by
        the server and every channel, for each request it parses from now on."""
        # waitress refuses a body of exactly the limit; ours allows max_body bytes.
        self._server.adj.max_request_body_size = max_body + 1

    def close(self, timeout: float = 5.0) -> None:
        """Stop listening, drop connections, and stop the worker threads."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        # Wake the loop with its own trigger, which stays open until the loop has ended:
        # closing it from inside the loop races this very write (and a closed descriptor
        # number may already belong to another file).
        for dispatcher in list(self._map.values()):
            if isinstance(dispatcher, waitress.trigger.trigger):
                dispatcher.pull_trigger()
                break
        self._thread.join(timeout)
        # Workers finishing a response pull the trigger too: stop them before closing it.
        self._server.task_dispatcher.shutdown(timeout=timeout)
        waitress.wasyncore.close_all(self._map)


def serve(
    listen: str,
    app: WSGIApplication,
    *,
    max_body: int = 1024 * 1024,
    threads: int = THREADS,
    connection_limit: int = CONNECTION_LIMIT,
    channel_timeout: int = CHANNEL_TIMEOUT,
) -> ApiServer:
    """Serve `app` on `listen` (`127.0.0.1:9468`, `[::1]:9468`; port 0 picks a free port)
    in a background thread. Raises OSError when the address cannot be bound."""
    if listen.strip().endswith(":0"):
        # split_listen refuses port 0 in configs; tests and tools use it for a free port.
        host, _ = split_listen(listen.strip()[:-2] + ":1")
        port = 0
    else:
        host, port = split_listen(listen)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    socket_map: dict[int, Any] = {}
    try:
        server = waitress.server.create_server(
            app,
            map=socket_map,
            listen=address,
            threads=threads,
            connection_limit=connection_limit,
            channel_timeout=channel_timeout,
            cleanup_interval=max(1, min(10, channel_timeout)),
            # waitress refuses a body of exactly the limit; ours allows max_body bytes.
            max_request_body_size=max_body + 1,
            max_request_header_size=MAX_HEADER,
            asyncore_use_poll=True,  # select() fails past fd 1024
            expose_tracebacks=False,
            clear_untrusted_proxy_headers=True,
            ident="recorder",
        )
    except OSError as exc:
        waitress.wasyncore.close_all(socket_map)
        raise OSError(exc.errno, f"cannot listen on {listen}: {exc.strerror or exc}") from None
    gate = _BodyGate(app if isinstance(app, ApiApp) else None)
    for dispatcher in socket_map.values():
        if isinstance(dispatcher, waitress.server.BaseWSGIServer):
            dispatcher.channel_class = _Channel
            dispatcher.body_gate = gate
    # "Task queue depth is N" at WARNING for every queued request under load is noise;
    # the latency it hints at is measured, not logged.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    return ApiServer(server, socket_map, listen)
