"""SSH faults with a real sshd of the test's own (so it can be killed): killed mid-sweep,
refusing connections, very slow (a delaying TCP proxy on loopback), host key changed,
authentication failure. Each must give `error` observations that say why, and, fed through
the real Detector, IncidentBook and Store, no outage incident (at most one of severity
`monitoring`), and recovery when the host comes back.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.base import Observation, Status
from recorder.config import Config, SSHHostConfig, parse_config
from recorder.detector import Detector
from recorder.hosts.ssh import SSHHost
from recorder.incidents import IncidentBook
from recorder.scheduler import Job, Scheduler, run_probe
from recorder.store import Store
from tests.conftest import (
    SSHD,
    _sshd_config,
    descendants,
    free_port,
    generate_key,
    wait_for_port,
)

pytestmark = pytest.mark.skipif(not os.path.exists(SSHD), reason=f"{SSHD} is not installed")

PROBE = "sites"  # reads a directory, links and files: SFTP and remote stat both


class OwnSSHD:
    """An sshd this test starts, kills and restarts on the same port."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.port = free_port()
        self.host_key = generate_key(directory / "host_key", "reliability-host")
        self.other_host_key = generate_key(directory / "other_host_key", "impostor-host")
        self.user_key = generate_key(directory / "id_user", "reliability-user")
        self.authorized = directory / "authorized_keys"
        shutil.copyfile(self.user_key.with_suffix(".pub"), self.authorized)
        self.known_hosts = directory / "known_hosts"
        public = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {public}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    def start(self, host_key: Path | None = None) -> None:
        config = self.directory / "sshd_config"
        config.write_text(
            _sshd_config(self.directory, self.port, host_key or self.host_key, self.authorized)
            # Debian's bash reads ~/.bashrc for every SSH command when SHLVL says it is the
            # first shell; a developer's bashrc (pyenv rehash takes a lock) then costs
            # each command time, and killing sshd mid-rehash leaves the lock behind for
            # every later shell. A higher SHLVL keeps bash to the command alone.
            + "SetEnv SHLVL=1\n"
        )
        log = self.directory / "sshd.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        wait_for_port(self.port, self.proc, log, timeout=10)

    def kill(self) -> None:
        """SIGKILL the listener and every session process it forked, by pid."""
        if self.proc is None:
            return
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def config(self, **overrides: Any) -> SSHHostConfig:
        fields: dict[str, Any] = {
            "address": "127.0.0.1",
            "port": self.port,
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "key": str(self.user_key),
            "known_hosts": str(self.known_hosts),
            "connect_timeout": 1.0,
            "command_timeout": 2.0,
        }
        fields.update(overrides)
        return SSHHostConfig.model_validate(fields)


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[OwnSSHD]:
    server = OwnSSHD(tmp_path / "sshd")
    server.start()
    try:
        yield server
    finally:
        server.kill()


# ---- the pipeline: probe -> detector -> incident book -> store --------------------------------


class Pipeline:
    """One watched SSH host, its sites laid out on disk, and the engine's real parts."""

    def __init__(self, root: Path, host: SSHHost) -> None:
        self.host = host
        available, enabled = root / "sites-available", root / "sites-enabled"
        available.mkdir()
        enabled.mkdir()
        (available / "example").write_text("server { listen 80; }\n")
        os.symlink(available / "example", enabled / "example")
        self.config: Config = parse_config(
            {
                "timezone": "UTC",
                "state_dir": str(root / "state"),
                "services": {"web": {"entrypoints": ["web-01"], "hosts": ["web-01"]}},
                "hosts": {"web-01": {"ssh": host.cfg.model_dump()}},
                "checks": [
                    {
                        "hosts": ["web-01"],
                        "probes": {
                            PROBE: {
                                "expect_enabled": ["example"],
                                "available_dir": str(available),
                                "enabled_dir": str(enabled),
                            }
                        },
                    }
                ],
            }
        )
        self.probe_config = next(iter(self.config.checks[0].probes.values()))
        self.store = Store(self.config.state_path)
        self.detector = Detector(unreachable_after=3)
        self.clock = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        self.book = IncidentBook(self.config, self.store, clock=lambda: self.clock)
        self.observations: list[Observation] = []

    def tick(self) -> Observation:
        """One probe run, fed through the engine as the daemon does."""
        obs = run_probe(self.host, PROBE, self.probe_config)
        self.clock += timedelta(seconds=10)
        obs = Observation(
            obs.host,
            obs.probe,
            obs.status,
            obs.summary,
            obs.fault,
            obs.details,
            self.clock,
            obs.duration,
        )
        self.observations.append(obs)
        self.book.observe(obs)
        for sig in self.detector.observe(obs, for_=0.0, recover_after=20.0):
            self.book.on_signal(sig)
        return obs

    def incidents(self) -> list[tuple[str, str]]:
        return [(i.severity, i.status) for i in self.store.list()]

    def close(self) -> None:
        self.host.close()
        self.store.close()


@pytest.fixture
def pipeline(tmp_path: Path, own_sshd: OwnSSHD) -> Iterator[Pipeline]:
    p = Pipeline(tmp_path, SSHHost("web-01", own_sshd.config()))
    yield p
    p.close()


def _assert_healthy(p: Pipeline) -> None:
    obs = p.tick()
    assert obs.status is Status.OK, obs.summary


def _errors_then_recovery(p: Pipeline, reason: str, recover: Any) -> None:
    """Three ticks in the fault: `error` observations saying `reason`; a monitoring
    incident at most, never an outage. Then `recover()`, and the host is back."""
    for _ in range(4):
        obs = p.tick()
        assert obs.status is Status.ERROR, obs.summary
        assert reason in obs.summary, obs.summary
        assert obs.duration < 5.0, "a fault must not hold a probe past its bounds"
    assert p.incidents() == [("monitoring", "open")], p.incidents()
    recover()
    for _ in range(4):
        obs = p.tick()
    assert obs.status is Status.OK, obs.summary
    assert p.incidents() == [("monitoring", "resolved")], p.incidents()
    monitoring = p.store.list()[0]
    assert reason in monitoring.title, monitoring.title


@pytest.mark.slow
def test_sshd_killed_mid_sweep_then_back(pipeline: Pipeline, own_sshd: OwnSSHD) -> None:
    _assert_healthy(pipeline)
    # Kill it while a probe is running: a thread keeps probing until a few probes after
    # the kill (not a fixed count, which a fast machine finished before the kill).
    results: list[Observation] = []
    killed = threading.Event()

    def keep_probing() -> None:
        after = 0
        for _ in range(1000):  # bounded; the kill comes after about 0.3 s of probing
            results.append(run_probe(pipeline.host, PROBE, pipeline.probe_config))
            after += killed.is_set()
            if after >= 5:
                return

    worker = threading.Thread(target=keep_probing)
    worker.start()
    time.sleep(0.3)
    own_sshd.kill()
    killed.set()
    worker.join(60)
    assert not worker.is_alive()
    assert {r.status for r in results} <= {Status.OK, Status.ERROR}
    assert any(r.status is Status.ERROR for r in results)
    _errors_then_recovery(pipeline, "connection refused", own_sshd.start)


@pytest.mark.slow
def test_refused_connections(pipeline: Pipeline, own_sshd: OwnSSHD) -> None:
    _assert_healthy(pipeline)
    own_sshd.kill()
    _errors_then_recovery(pipeline, "connection refused", own_sshd.start)


@pytest.mark.slow
def test_changed_host_key_is_refused_reported_and_never_accepted(
    pipeline: Pipeline, own_sshd: OwnSSHD
) -> None:
    _assert_healthy(pipeline)
    known_before = own_sshd.known_hosts.read_text()
    own_sshd.kill()
    own_sshd.start(host_key=own_sshd.other_host_key)  # an impostor on the same address

    def back() -> None:
        own_sshd.kill()
        own_sshd.start()

    _errors_then_recovery(pipeline, "CHANGED", back)
    assert own_sshd.known_hosts.read_text() == known_before
    # Trust on first use does not cover a changed key either.
    own_sshd.kill()
    own_sshd.start(host_key=own_sshd.other_host_key)
    tofu = SSHHost("web-01", own_sshd.config(trust_on_first_use=True))
    try:
        obs = run_probe(tofu, PROBE, pipeline.probe_config)
    finally:
        tofu.close()
    assert obs.status is Status.ERROR and "CHANGED" in obs.summary, obs.summary
    assert own_sshd.known_hosts.read_text() == known_before


@pytest.mark.slow
def test_authentication_failure(pipeline: Pipeline, own_sshd: OwnSSHD) -> None:
    _assert_healthy(pipeline)
    saved = own_sshd.authorized.read_text()
    own_sshd.authorized.write_text("")  # the key was revoked on the host
    pipeline.host.close()  # the next call must log in again

    def back() -> None:
        own_sshd.authorized.write_text(saved)

    _errors_then_recovery(pipeline, "authentication failed", back)


# ---- very slow: a proxy that delays every byte ------------------------------------------------


class SlowProxy:
    """TCP proxy on 127.0.0.1 that forwards each chunk after `delay` seconds."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.stopped.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if self.stopped.wait(self.delay):
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's pump
                except OSError:
                    pass
            # Each socket is the source of exactly one pump, which closes it: a pair
            # accepted after close() went through `sockets` is closed all the same.
            source.close()

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.mark.slow
def test_very_slow_host_is_bounded_and_others_stay_on_time(
    tmp_path: Path, own_sshd: OwnSSHD
) -> None:
    # Every chunk waits 1.5 s each way: the handshake alone takes longer than the
    # connect timeout (1 s), and a command longer than the job timeout.
    proxy = SlowProxy(own_sshd.port, delay=1.5)
    slow = SSHHost(
        "slow", own_sshd.config(port=proxy.port, known_hosts=str(_known_as(own_sshd, proxy)))
    )
    fast = SSHHost("fast", own_sshd.config())
    p = Pipeline(tmp_path, fast)
    arrivals: dict[str, list[tuple[float, Observation]]] = {"slow": [], "fast": []}
    started = time.monotonic()

    def deliver(obs: Observation, job: Job) -> None:
        arrivals[obs.host].append((time.monotonic() - started, obs))

    jobs = [
        Job(
            host=h,
            probe=PROBE,
            config=p.probe_config,
            interval=0.5,
            timeout=2.0,
            for_=0.0,
            recover_after=1.0,
        )
        for h in (slow, fast)
    ]
    scheduler = Scheduler(jobs, deliver, concurrency=4)
    scheduler.start()
    try:
        time.sleep(4.0)
    finally:
        ended = time.monotonic() - started
        scheduler.stop()
        proxy.close()
        slow.close()
        p.close()
    slow_obs = [o for _, o in arrivals["slow"]]
    assert slow_obs and all(o.status is Status.ERROR for o in slow_obs), slow_obs
    # Said as a timeout of the probe, or of the SSH banner exchange (paramiko's words).
    assert all("timed out" in o.summary or "banner" in o.summary for o in slow_obs), [
        o.summary for o in slow_obs
    ]
    # Bounded: an error at least every job timeout plus one interval.
    times = [0.0] + [t for t, _ in arrivals["slow"]] + [ended]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 2.0 + 0.5 + 0.5
    fast_times = [t for t, o in arrivals["fast"] if o.status is Status.OK]
    assert len(fast_times) >= 5, arrivals["fast"]
    assert max(b - a for a, b in zip(fast_times, fast_times[1:], strict=False)) < 1.5


def _known_as(server: OwnSSHD, proxy: SlowProxy) -> Path:
    """known_hosts naming the proxy's port with the server's real key."""
    public = " ".join(server.host_key.with_suffix(".pub").read_text().split()[:2])
    path = server.directory / f"known_hosts_{proxy.port}"
    path.write_text(f"[127.0.0.1]:{proxy.port} {public}\n")
    return path
