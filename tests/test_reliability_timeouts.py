"""A site answering slowly or hanging mid-response: the probe's own timeouts hold, the
scheduler's job timeout holds above them, and the other hosts are probed on time.

The "nginx" here is an HTTP server on loopback that this test controls: it sends the
status line and headers and then stalls, or trickles the body a byte at a time.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from probes.base import Observation, Status
from recorder.config import parse_config
from recorder.hosts.local import LocalHost
from recorder.scheduler import Job, Scheduler, run_probe
from tests.conftest import free_port


class Misbehaving:
    """A raw-socket HTTP server: `mode` is `stall` (headers, then silence), `trickle`
    (headers, then one body byte every `pace` seconds, forever), `slow` (the whole answer
    after `pace` seconds), or `silent` (accepts, never says anything)."""

    def __init__(self, mode: str, pace: float = 0.5) -> None:
        self.mode = mode
        self.pace = pace
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # The connection closes here, whatever happens: a probe still in flight after the
        # scheduler stopped can be accepted after close() went through `connections`, and
        # a socket left for the collector is a ResourceWarning that fails another test.
        with conn:
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            if self.mode == "silent":
                self.stopped.wait()
                return
            if self.mode == "slow" and self.stopped.wait(self.pace):
                return
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nContent-Type: text/html\r\n\r\n"
            if self.mode == "slow":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                return
            conn.sendall(head)
            if self.mode == "stall":
                self.stopped.wait()
                return
            while not self.stopped.wait(self.pace):  # trickle
                conn.sendall(b"x")
        except OSError:
            pass

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def servers() -> Iterator[dict[str, Misbehaving]]:
    made = {mode: Misbehaving(mode) for mode in ("stall", "trickle", "silent")}
    made["slow"] = Misbehaving("slow", pace=0.8)
    yield made
    for server in made.values():
        server.close()


def _http_config(url: str, body: str | None = None) -> object:
    http: dict[str, object] = {
        "url": url,
        "connect_timeout": "1s",
        "read_timeout": "1s",
        "slow": "500ms",
    }
    if body is not None:
        http["body"] = body
    config = parse_config(
        {"hosts": {"h": {"local": {}}}, "checks": [{"hosts": ["h"], "probes": {"http": http}}]}
    )
    return config.checks[0].probes["http"]


@pytest.mark.parametrize("body", [None, "hello"], ids=["status-only", "body-match"])
@pytest.mark.parametrize("mode", ["stall", "trickle", "silent", "slow"])
def test_the_probe_itself_is_bounded(
    servers: dict[str, Misbehaving],
    tmp_path: Path,
    mode: str,
    body: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The probe's own timeouts, not only the scheduler's, must end it: the scheduler
    # does not start a job again while its last run is in flight, and `recorder probe`
    # waits for its worker threads when it exits, so a probe that never returns hangs both.
    cfg = _http_config(servers[mode].url, body)
    found: list[Observation] = []
    host = LocalHost("h", prefix=str(tmp_path))
    # In a thread so that a probe that never returns fails this test instead of hanging
    # the suite (closing the server at teardown then lets the thread finish).
    worker = threading.Thread(
        target=lambda: found.append(run_probe(host, "http", cfg)),  # type: ignore[arg-type]
        daemon=True,
    )
    started = time.monotonic()
    worker.start()
    worker.join(4.0)
    took = time.monotonic() - started
    assert found, f"{mode}: the probe was still running after {took:.1f}s"
    obs = found[0]
    print(f"{mode}/{body}: {obs.status} {obs.fault} in {took:.2f}s: {obs.summary}")
    # Not a probe crash (run_probe logs those with a traceback): a verdict with a reason.
    assert "raised" not in caplog.text, caplog.text[-2000:]
    if mode in ("silent", "slow"):
        assert obs.status is Status.FAIL and str(obs.fault) == "slow-responses", obs
    elif body is not None:
        # Asked to read the body, the probe must notice that it never comes.
        assert obs.status is not Status.OK, obs.summary


@pytest.mark.slow
def test_hung_sites_do_not_delay_the_others(
    servers: dict[str, Misbehaving], tmp_path: Path
) -> None:
    healthy = [Misbehaving("slow", pace=0.0) for _ in range(3)]
    try:
        targets = {f"ok-{i}": s.url for i, s in enumerate(healthy)}
        targets.update({f"{mode}-site": s.url for mode, s in servers.items()})
        arrivals: dict[str, list[tuple[float, Observation]]] = {name: [] for name in targets}
        lock = threading.Lock()
        started = time.monotonic()

        def deliver(obs: Observation, job: Job) -> None:
            with lock:
                arrivals[obs.host].append((time.monotonic() - started, obs))

        jobs = [
            Job(
                host=LocalHost(name, prefix=str(tmp_path)),
                probe="http",
                # Matching the body makes the probe read it: a hung body must show.
                config=_http_config(url, body="hello"),  # type: ignore[arg-type]
                interval=0.5,
                timeout=2.0,
                for_=0.0,
                recover_after=1.0,
            )
            for name, url in targets.items()
        ]
        # Fewer workers than hosts: hung probes must not starve the healthy ones.
        scheduler = Scheduler(jobs, deliver, concurrency=4)
        scheduler.start()
        try:
            time.sleep(6.0)
        finally:
            ended = time.monotonic() - started
            scheduler.stop()
    finally:
        for server in healthy:
            server.close()
    for name, seen in arrivals.items():
        # The gaps between verdicts, and from the last verdict to the end of the run: a
        # host that fell silent shows as one long last gap.
        times = [0.0] + [t for t, _ in seen] + [ended]
        gap = max(b - a for a, b in zip(times, times[1:], strict=False))
        if name.startswith("ok-"):
            assert all(o.status is Status.OK for _, o in seen), [o.summary for _, o in seen]
            assert len(seen) >= 8 and gap < 1.2, (name, len(seen), gap)
        else:
            summaries = [o.summary for _, o in seen]
            assert seen and all(o.status is not Status.OK for _, o in seen), (name, summaries)
            # A verdict at least every job timeout plus an interval, however hung.
            assert gap < 2.0 + 0.5 + 0.6, (name, gap, summaries)


def test_a_late_start_does_not_move_the_jobs_phase(tmp_path: Path) -> None:
    """The loop woke 0.3 s after a run was due (a loaded machine): the next run is still
    due one interval after the first was due. Counting from the wake-up shifted the phase
    a little more on every late wake-up. A clock the test sets, and the real pool."""
    now = [100.0]
    done = threading.Event()
    job = Job(
        host=LocalHost("h", prefix=str(tmp_path)),
        probe="http",
        config=_http_config(f"http://127.0.0.1:{free_port()}/"),  # type: ignore[arg-type]
        interval=10.0,
        timeout=1.0,
        for_=0.0,
        recover_after=1.0,
    )
    scheduler = Scheduler([job], lambda obs, job: done.set(), concurrency=1, clock=lambda: now[0])
    try:
        assert job.next_due == 100.0
        now[0] = 100.3
        scheduler._start_due(now[0])
        assert done.wait(10)
        assert job.started == 100.3 and job.next_due == 110.0
        # A run that overran its interval is due again at once, not in the past.
        now[0] = 125.0
        scheduler._start_due(110.0)
        done.clear()
        assert done.wait(10)
        assert job.next_due == 125.0
    finally:
        scheduler.stop()


def test_jobs_are_spread_over_the_interval_and_keep_their_phase_after_run_now(
    tmp_path: Path,
) -> None:
    """Four jobs at 1s start a quarter-second apart (the probes of one outage look at it
    at different moments); an extra run for diagnostics does not pull them together."""

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    starts: dict[str, list[float]] = {f"h{i}": [] for i in range(4)}

    def deliver(obs: Observation, job: Job) -> None:
        starts[job.host.name].append(job.started)

    jobs = [
        Job(
            host=LocalHost(name, prefix=str(tmp_path)),
            probe="http",
            config=_http_config(url),  # type: ignore[arg-type]
            interval=1.0,
            timeout=1.0,
            for_=0.0,
            recover_after=1.0,
        )
        for name in starts
    ]
    scheduler = Scheduler(jobs, deliver, concurrency=4)
    t0 = time.monotonic()
    scheduler.start()
    try:
        time.sleep(1.6)
        scheduler.run_now(["h0", "h1"])  # 0.6s and 0.35s away from their own phases
        time.sleep(2.5)
    finally:
        scheduler.stop()
        server.shutdown()
        server.server_close()
    firsts = [starts[name][0] - t0 for name in sorted(starts)]
    assert all(abs(first - i * 0.25) < 0.15 for i, first in enumerate(firsts)), firsts
    for i, name in enumerate(sorted(starts)):
        # Every run but the extra one sits on the job's own quarter of the second.
        phases = [(at - t0 - i * 0.25) % 1.0 for at in starts[name]]
        off_phase = [p for p in phases if 0.15 < p < 0.85]
        assert len(off_phase) == (1 if name in ("h0", "h1") else 0), (name, phases)
        assert len(phases) >= 4, (name, phases)
