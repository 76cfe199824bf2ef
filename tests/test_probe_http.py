"""The http probe against real local servers: slow answers, read timeouts, bodies, IPv6,
and config validation."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest
from pydantic import ValidationError

from probes import agent, http, upstreams
from probes.accesslog import OWN_AGENT
from probes.base import Fault, Observation, Status
from recorder.hosts.local import LocalHost
from tests.nginx_fixture import NGINX, NginxHost, nginx  # noqa: F401 - the fixture

AGENTS: list[str] = []  # the User-Agent of every request the servers got


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        AGENTS.append(self.headers.get("User-Agent", ""))
        if self.path.startswith("/slow"):
            time.sleep(0.3)
        if self.path.startswith("/hang"):
            time.sleep(1.0)
        if self.path.startswith("/trickle"):
            # Headers at once, then the body a byte at a time: each read is quick, the
            # whole never comes.
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
            return
        body = b"status: all good\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client hung up first (the read-timeout test): expected


@pytest.fixture
def server() -> Iterator[int]:
    srv = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def probe(url: str, host: LocalHost | None = None, **kw: object) -> Observation:
    config = http.Config.model_validate({"url": url, **kw})
    return http.probe(host or LocalHost("web-01"), config)


def test_ok_records_status_and_timing(server: int) -> None:
    obs = probe(f"http://{{address}}:{server}/")
    assert obs.status == Status.OK
    assert obs.details["status_code"] == 200
    assert obs.details["url"] == f"http://127.0.0.1:{server}/"
    assert 0 < obs.details["elapsed"] < 1


def test_slow_answer(server: int) -> None:
    obs = probe(f"http://{{address}}:{server}/slow", slow="100ms")
    assert obs.fault == Fault.SLOW_RESPONSES
    assert "slow above 0.1s" in obs.summary
    # Said once the bar has passed, not when the 0.3s answer finally comes.
    assert 0.1 <= obs.details["elapsed"] < 0.3


def test_no_answer_by_slow_is_reported_then(server: int) -> None:
    started = time.monotonic()
    obs = probe(f"http://{{address}}:{server}/hang", slow="200ms", read_timeout="5s")
    assert time.monotonic() - started < 1.0  # not the read timeout
    assert obs.fault == Fault.SLOW_RESPONSES
    assert obs.details["reason"] == "slow"
    assert obs.summary.endswith("within 0.2s (slow above 0.2s)"), obs.summary


def test_read_timeout_is_slow_not_closed(server: int) -> None:
    obs = probe(f"http://{{address}}:{server}/hang", read_timeout="300ms")
    assert obs.fault == Fault.SLOW_RESPONSES
    assert obs.details["reason"] == "read-timeout"


def test_trickled_body_is_bounded_by_the_read_timeout(server: int) -> None:
    started = time.monotonic()
    obs = probe(f"http://{{address}}:{server}/trickle", body="hello", read_timeout="400ms")
    assert time.monotonic() - started < 1.5
    assert obs.fault == Fault.SLOW_RESPONSES
    assert obs.details["reason"] == "body-timeout"


def test_connect_timeout_is_port_closed() -> None:
    # A listening socket whose accept queue is full never completes new handshakes.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        port = s.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            obs = probe(f"http://127.0.0.1:{port}/", connect_timeout="200ms", read_timeout="200ms")
        finally:
            for c in fillers:
                c.close()
    assert obs.fault == Fault.PORT_CLOSED
    assert obs.details["reason"] == "connect-timeout"
    assert "(timeout)" in obs.summary


def test_body_must_match(server: int) -> None:
    assert probe(f"http://{{address}}:{server}/", body="all good").status == Status.OK
    obs = probe(f"http://{{address}}:{server}/", body="^maintenance")
    assert obs.fault == Fault.UNEXPECTED_STATUS
    assert obs.details["reason"] == "body-mismatch"
    assert "status: all good" in obs.details["body_excerpt"]


def test_expected_statuses(server: int) -> None:
    obs = probe(f"http://{{address}}:{server}/", expect=[301])
    # The port answered: a wrong status is never called a closed port.
    assert obs.fault == Fault.UNEXPECTED_STATUS
    assert obs.details["reason"] == "unexpected-status"
    assert "(expected 301)" in obs.summary


def test_ipv6_address_gets_brackets() -> None:
    host = LocalHost("web-01", address="::1")
    assert http.target_url("http://{address}:8080/{host}", host) == "http://[::1]:8080/web-01"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": "http://{addr}/"}, "unknown placeholder {addr}"),
        ({"url": "ftp://{address}/"}, "must start with http"),
        ({"url": "http://{address"}, "bad URL template"),
        ({"body": "(unclosed"}, "not a valid regular expression"),
        ({"expect": [99]}, "is not an HTTP status"),
        ({"expect": []}, "at least one status"),
    ],
)
def test_config_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("(", r"\(")):
        http.Config.model_validate(fields)


def test_the_probes_say_they_are_the_recorder(server: int) -> None:
    """The User-Agent the access-log reader leaves out of the clients (accesslog.OWN_AGENT),
    with the installed version; from the http probe and the upstreams probe's backend
    check alike. A User-Agent in the config's headers replaces it."""
    AGENTS.clear()
    assert probe(f"http://{{address}}:{server}/").status == Status.OK
    assert upstreams.check_backend("127.0.0.1", server, "http", "/", 2.0) is None
    version = metadata.version("nginx-recorder")
    assert AGENTS == [f"recorder/{version}"] * 2
    assert AGENTS[0].encode().startswith(OWN_AGENT)
    probe(f"http://{{address}}:{server}/", headers={"user-agent": "probe-by-hand"})
    assert AGENTS[-1] == "probe-by-hand"


def wrapper(path: Path, body: str) -> str:
    """An executable script configured as the check's nginx."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_a_failing_check_reads_the_configuration_once(
    nginx: NginxHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The file behind a failing URL comes from `nginx -T`, run with the check's nginx and
    cached: two failures in a row run it once, and both name the file (#15)."""
    calls = tmp_path / "calls"
    binary = wrapper(tmp_path / "nginx", f'echo run >> "{calls}"\nexec {NGINX} "$@"')
    host = nginx.host()
    for _ in range(2):
        obs = probe(f"http://{{address}}:{nginx.port}/broken", host, nginx=binary)
        assert obs.fault == Fault.HTTP_5XX
        assert obs.facts.subjects.file == ("/etc/nginx/sites-enabled/default",)
    assert calls.read_text().splitlines() == ["run"]


def test_a_hanging_lookup_does_not_delay_the_observation(
    nginx: NginxHost,  # noqa: F811
    tmp_path: Path,
) -> None:
    """`nginx -T` that never answers (a struggling host) costs the failing observation
    the short lookup timeout, not the 10 s a configuration probe allows; the observation
    goes out without the file (#15)."""
    binary = wrapper(tmp_path / "nginx", "exec sleep 30")
    start = time.monotonic()
    obs = probe(f"http://{{address}}:{nginx.port}/broken", nginx.host(), nginx=binary)
    took = time.monotonic() - start
    assert obs.fault == Fault.HTTP_5XX
    assert obs.facts.subjects.file == ()
    assert took < 4.0, took  # the lookup is bounded at 2 s (nginxcli.LOOKUP_TIMEOUT)


def test_the_lookup_takes_the_checks_nginx() -> None:
    """A check names its nginx once, in its config probe: the http and error_rate probes'
    `nginx -T` runs that nginx, and error_rate reads the process probe's pid file; a
    setting of their own wins (#15)."""
    from recorder.config import Check

    check = Check.model_validate(
        {
            "hosts": ["web-01"],
            "probes": {
                "config": {"nginx": "/opt/nginx/sbin/nginx", "conf": "/opt/nginx/nginx.conf"},
                "process": {"pid_file": "/opt/nginx/nginx.pid"},
                "http": {"prefix": "/srv/"},
                "error_rate": {},
            },
        }
    )
    got, rate = check.probes["http"], check.probes["error_rate"]
    assert (got.nginx, got.conf, got.prefix) == (
        "/opt/nginx/sbin/nginx",
        "/opt/nginx/nginx.conf",
        "/srv/",
    )
    assert (rate.nginx, rate.conf, rate.prefix) == (
        "/opt/nginx/sbin/nginx",
        "/opt/nginx/nginx.conf",
        None,
    )
    assert rate.pid_file == "/opt/nginx/nginx.pid"


# ---- a connection reset before any answer ---------------------------------------------------
# `nginx -t` (the config probe, every interval) binds and listens on the configuration's
# ports while nginx is down; a connection that lands in its backlog is reset when it exits.
# Here a real listener does what that check does: listen, never accept, close.


@pytest.fixture
def check_listening() -> Iterator[int]:
    """A port listened on until one connection waits in its backlog, then closed, as
    `nginx -t` closes its sockets when it exits: the kernel resets that connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(511)
    port = int(listener.getsockname()[1])

    def run() -> None:
        select.select([listener], [], [], 10.0)  # readable: a connection is queued
        listener.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        thread.join(timeout=15)


@contextmanager
def resetting(resets: int = 1_000, after: float = 0.0) -> Iterator[tuple[int, list[int]]]:
    """A server that resets the first `resets` connections it accepts, `after` seconds
    after reading the request, and answers 200 to the others; the list counts them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    accepted: list[int] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.recv(1024)
            if len(accepted) > resets:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                conn.close()
                continue
            time.sleep(after)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: RST, not FIN

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1]), accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_reset_from_a_passing_listener_is_asked_again_and_reads_refused(
    check_listening: int,
) -> None:
    obs = probe(
        f"http://127.0.0.1:{check_listening}/", connect_timeout="2s", read_timeout="5s", slow="5s"
    )
    assert obs.fault == Fault.PORT_CLOSED
    assert obs.details["reason"] == "connection-refused", obs.summary
    assert obs.summary == f"web-01: connection refused on http://127.0.0.1:{check_listening}/"


def test_a_backend_reset_by_a_passing_listener_reads_refused(check_listening: int) -> None:
    reason = upstreams.check_backend("127.0.0.1", check_listening, "http", "/", 5.0)
    assert reason == "connection refused"


def test_a_server_that_keeps_resetting_is_reported_as_reset() -> None:
    with resetting() as (port, accepted):
        obs = probe(f"http://127.0.0.1:{port}/", read_timeout="5s", slow="5s")
        assert obs.fault == Fault.PORT_CLOSED
        assert obs.details["reason"] == "connection-error"
        assert "Connection reset by peer" in obs.summary, obs.summary
        assert len(accepted) == 2  # asked once more, not more
        assert upstreams.check_backend("127.0.0.1", port, "http", "/", 5.0) == "connection failed"
        assert len(accepted) == 4


def test_the_answer_after_a_reset_is_timed_from_the_second_attempt() -> None:
    with resetting(resets=1) as (port, accepted):
        started = time.perf_counter()
        obs = probe(f"http://127.0.0.1:{port}/", read_timeout="5s", slow="5s")
        took = time.perf_counter() - started
    assert obs.status == Status.OK, obs.summary
    assert obs.details["retried_after_reset"] is True
    assert len(accepted) == 2
    assert obs.details["elapsed"] <= took - agent.RESET_RETRY_DELAY


def test_a_late_reset_is_not_asked_again() -> None:
    """A reset after RESET_RETRY_WITHIN is the server's answer, and a second attempt
    could outlast the probe's job timeout."""
    with resetting(after=agent.RESET_RETRY_WITHIN + 0.3) as (port, accepted):
        obs = probe(f"http://127.0.0.1:{port}/", read_timeout="5s", slow="5s")
    assert obs.details["reason"] == "connection-error"
    assert "retried_after_reset" not in obs.details
    assert len(accepted) == 1
