"""HTTP probe: is the site answering on its port, with the expected status, in time?

What each failure means, as an operator reads it:
- nothing accepts the connection (refused, connect timeout, reset, TLS failure):
  `port-closed`, with the reason (a reset before any answer is asked once more first:
  probes/agent.py says why);
- the server answers 5xx: `http-5xx`;
- it answers another unexpected status (a 404 because the site is not served, a 301
  where 200 was expected) or a body that does not match: `unexpected-status`, with
  details.reason "unexpected-status" / "body-mismatch". The port is open, so this is
  never `port-closed`; the engine ranks the root cause from all the evidence (a missing
  symlink with a default server left answering shows in the sites probe);
- the answer (or its absence: a read timeout) takes longer than `slow`: `slow-responses`,
  said as soon as `slow` has passed without headers, not after the read timeout.

Requests go straight to the target: proxies from the environment are ignored. They say
`User-Agent: recorder/VERSION` (`USER_AGENT`), so the error_rate probe and `recorder
logscan` can leave the recorder's own requests out of the site's clients and error share
(probes/accesslog.py, `OWN_AGENT`). A `User-Agent` in `headers` replaces it; those
requests then count as a client's. When the
recorder's own machine runs out of descriptors or memory the probe could not look (an
`error`), whatever the exception says about the connection.
"""

from __future__ import annotations

import re
import string
import time
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from pydantic import BaseModel, ConfigDict, Field, field_validator

from probes import agent
from probes.agent import USER_AGENT as USER_AGENT
from probes.base import (
    Fault,
    Host,
    Observation,
    Status,
    error_observation,
    local_resource_error,
    measured,
)
from probes.durations import Duration
from probes.facts import Facts, Subjects
from probes.nginxcli import serving_files

NAME = "http"
_BODY_LIMIT = 1 << 20  # bytes of the body read for `body` matching; the rest is not fetched
_PLACEHOLDERS = {"address", "host"}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = "http://{address}:80/"  # {address} and {host} are filled from the host
    expect: list[int] = Field(default_factory=lambda: [200])
    body: str | None = None  # a regular expression the body must match
    connect_timeout: Duration = 3.0
    read_timeout: Duration = 5.0
    slow: Duration = 2.0  # slower than this is `slow-responses`
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    # nginx's command line for naming the file of the server block behind a failing URL
    # (`nginx -T`); unset, the recorder's config takes the check's config probe's.
    nginx: str = "nginx"
    conf: str = "/etc/nginx/nginx.conf"
    prefix: str | None = None

    @field_validator("url")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"bad URL template: {exc}") from None
        unknown = fields - _PLACEHOLDERS
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{sorted(unknown)[0]}}}: use {{address}} or {{host}}"
            )
        if not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("body")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("expect")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("must list at least one status")
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status")
        return value


def target_url(template: str, host: Host) -> str:
    """The URL with the host filled in; an IPv6 address gets its brackets."""
    address = host.address
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return template.format(address=address, host=host.name)


def _check(host: Host, config: Config) -> Observation:
    url = target_url(config.url, host)
    details: dict[str, Any] = {"url": url, "status_code": None, "elapsed": None, "reason": None}

    def fail(fault: Fault, summary: str, reason: str) -> Observation:
        details["reason"] = reason
        # The file of the server block behind the URL's port: where a task says to fix the
        # log format or the timeouts (only on a failure: it runs nginx -T). Not when
        # nothing answers: nginx is likely down, and `nginx -T` would then leave an empty
        # pid file behind (nginx creates it to test it can), which the process probe,
        # reading it at the same moment, would report instead of a missing one.
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = None
        files = (
            serving_files(
                host,
                port=port,
                name=parts.hostname or "",
                nginx=config.nginx,
                conf=config.conf,
                prefix=config.prefix,
            )
            if port and fault is not Fault.PORT_CLOSED
            else ()
        )
        return Observation(
            host=host.name,
            probe=NAME,
            status=Status.FAIL,
            fault=fault,
            summary=summary,
            details=details,
            facts=Facts(subjects=Subjects(url=url, file=files)),
        )

    session = requests.Session()
    session.trust_env = False  # no proxies or netrc from the environment: probe the target
    session.headers["User-Agent"] = USER_AGENT  # config.headers may replace it
    # No answer by `slow` is already slow: say so then, rather than wait out the read
    # timeout (a response delayed 3s is reported after 2s, not after 3s).
    header_wait = min(config.read_timeout, config.slow)
    start = time.perf_counter()

    def again() -> None:  # asked once more after a reset: the answer's time starts now
        nonlocal start
        start = time.perf_counter()
        details["retried_after_reset"] = True

    try:
        with agent.get(
            session,
            url,
            again,
            timeout=(config.connect_timeout, header_wait),
            allow_redirects=False,
            headers=config.headers,
            verify=config.verify_tls,
            stream=True,
        ) as response:
            details["status_code"] = response.status_code
            details["headers_elapsed"] = round(time.perf_counter() - start, 6)
            body: bytes | None = b""
            if config.body is not None:
                body = read_body(response.raw, time.perf_counter() + config.read_timeout)
                if body is None:
                    details["elapsed"] = round(time.perf_counter() - start, 6)
                    return fail(
                        Fault.SLOW_RESPONSES,
                        f"{host.name}: {url} sent its headers but not its body within"
                        f" {config.read_timeout:g}s",
                        "body-timeout",
                    )
        elapsed = time.perf_counter() - start
    except requests.exceptions.ConnectTimeout:
        details["elapsed"] = round(time.perf_counter() - start, 6)
        return fail(
            Fault.PORT_CLOSED,
            f"{host.name}: no connection to {url} within {config.connect_timeout:g}s (timeout)",
            "connect-timeout",
        )
    except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError):
        details["elapsed"] = round(time.perf_counter() - start, 6)
        if header_wait < config.read_timeout:
            return fail(
                Fault.SLOW_RESPONSES,
                f"{host.name}: no answer from {url} within {header_wait:g}s"
                f" (slow above {config.slow:g}s)",
                "slow",
            )
        return fail(
            Fault.SLOW_RESPONSES,
            f"{host.name}: {url} accepted the connection but sent no answer within"
            f" {config.read_timeout:g}s",
            "read-timeout",
        )
    except requests.exceptions.SSLError as exc:
        details["error"] = _short(exc)
        return fail(Fault.PORT_CLOSED, f"{host.name}: TLS failed on {url}: {_short(exc)}", "tls")
    except requests.exceptions.ConnectionError as exc:
        local = local_resource_error(exc)
        if local is not None:
            return error_observation(host, NAME, local)
        details["elapsed"] = round(time.perf_counter() - start, 6)
        details["error"] = _short(exc)
        refused = "refused" in str(exc).lower()
        what = "connection refused" if refused else _short(exc)
        return fail(
            Fault.PORT_CLOSED,
            f"{host.name}: {what} on {url}",
            "connection-refused" if refused else "connection-error",
        )
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        local = local_resource_error(exc)
        if local is not None:
            return error_observation(host, NAME, local)
        details["error"] = _short(exc)
        return fail(Fault.PORT_CLOSED, f"{host.name}: {url}: {_short(exc)}", "request-error")
    finally:
        session.close()

    details["elapsed"] = round(elapsed, 6)
    code = details["status_code"]
    if code not in config.expect and code >= 500:
        return fail(
            Fault.HTTP_5XX,
            f"{host.name} answered {code} on {url}" + _expected(config),
            "server-error",
        )
    if code not in config.expect:
        return fail(
            Fault.UNEXPECTED_STATUS,
            f"{host.name} answered {code} on {url}" + _expected(config),
            "unexpected-status",
        )
    if config.body is not None and body is not None:
        text = body.decode("utf-8", "replace")
        if not re.search(config.body, text):
            details["body_excerpt"] = text[:200]
            return fail(
                Fault.UNEXPECTED_STATUS,
                f"{host.name} answered {code} on {url} but the body does not match {config.body!r}",
                "body-mismatch",
            )
    if elapsed > config.slow:
        return fail(
            Fault.SLOW_RESPONSES,
            f"{host.name} took {elapsed:.2f}s to answer {url} (slow above {config.slow:g}s)",
            "slow",
        )
    return Observation(
        host=host.name,
        probe=NAME,
        status=Status.OK,
        summary=f"{host.name} answered {code} on {url} in {elapsed * 1000:.0f}ms",
        details=details,
    )


probe = measured(_check)


def read_body(raw: Any, deadline: float) -> bytes | None:
    """Up to _BODY_LIMIT bytes of the body, or None when it does not arrive by `deadline`.
    The socket timeout bounds each wait, not the total: a server trickling a byte at a
    time would keep a plain read going forever, so the deadline is checked between
    reads of whatever has arrived."""
    read_some = getattr(raw, "read1", None)  # urllib3 2; 1.x reads small pieces instead
    parts: list[bytes] = []
    size = 0
    while size < _BODY_LIMIT:
        if time.perf_counter() > deadline:
            return None
        want = _BODY_LIMIT - size
        data = (
            read_some(want, decode_content=True)
            if read_some is not None
            else raw.read(min(want, 512), decode_content=True)
        )
        if not data:
            break
        parts.append(data)
        size += len(data)
    return b"".join(parts)


def _expected(config: Config) -> str:
    return f" (expected {', '.join(map(str, config.expect))})"


def _short(exc: BaseException) -> str:
    """requests wraps urllib3 which wraps the socket error; the innermost reason reads best:
    "Failed to establish a new connection: [Errno 111] Connection refused"."""
    reason: object = exc
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, urllib3.exceptions.MaxRetryError) and inner.reason is not None:
        reason = inner.reason
    elif isinstance(inner, BaseException):
        reason = inner
    text = str(reason)
    # urllib3 prefixes its connection object: "HTTPConnection(host='x', port=80): ..."
    text = re.sub(r"^(?:<[^>]*>|\w+\([^)]*\)): ", "", text)
    return text[:200]
