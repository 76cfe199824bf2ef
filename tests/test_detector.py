"""The detector's state machine: ok -> pending -> firing -> recovering -> ok."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from probes.base import Fault, Observation, Status
from recorder.daemon import Daemon
from recorder.detector import Detector, Signal, SignalKind, State
from tests.conftest import free_port

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def obs(seconds: float, status: Status, fault: Fault | None = None) -> Observation:
    return Observation(
        host="lb-01",
        probe="http",
        status=status,
        summary=str(status),
        fault=fault if status is Status.FAIL else None,
        at=T0 + timedelta(seconds=seconds),
    )


def feed(
    det: Detector, samples: list[tuple[float, Status]], for_: float = 0.0, recover: float = 5.0
) -> list[str]:
    out = []
    for t, status in samples:
        for sig in det.observe(obs(t, status, Fault.PORT_CLOSED), for_, recover):
            out.append(f"{t:g}:{sig.kind}")
    return out


def test_for_zero_fires_on_first_failure() -> None:
    det = Detector()
    assert feed(det, [(0, Status.OK), (1, Status.FAIL)]) == ["1:fired"]
    assert det.state("lb-01", "http") is State.FIRING


def test_pending_until_for_elapsed() -> None:
    det = Detector()
    events = feed(
        det, [(0, Status.FAIL), (1, Status.FAIL), (2, Status.FAIL), (3, Status.FAIL)], for_=2.5
    )
    assert events == ["3:fired"]


def test_fired_signal_carries_first_failed_sample_time() -> None:
    det = Detector()
    det.observe(obs(0, Status.FAIL, Fault.PORT_CLOSED), 2.0, 5.0)
    sigs = det.observe(obs(2, Status.FAIL, Fault.PORT_CLOSED), 2.0, 5.0)
    assert sigs[0].since == T0
    assert sigs[0].fault is Fault.PORT_CLOSED


def test_pending_that_heals_never_fires() -> None:
    det = Detector()
    assert (
        feed(det, [(0, Status.FAIL), (1, Status.OK), (2, Status.FAIL), (3, Status.OK)], for_=5)
        == []
    )
    assert det.state("lb-01", "http") is State.OK


def test_recovery_needs_recover_after() -> None:
    det = Detector()
    samples = [(0, Status.FAIL), (1, Status.OK), (3, Status.OK), (6, Status.OK)]
    assert feed(det, samples, recover=5) == ["0:fired", "6:recovered"]


def test_flapping_stays_one_signal_and_counts_flaps() -> None:
    det = Detector()
    samples = [
        (0, Status.FAIL),
        (1, Status.OK),
        (2, Status.FAIL),
        (3, Status.OK),
        (4, Status.FAIL),
        (5, Status.OK),
    ]
    events = feed(det, samples, recover=10)
    assert events == ["0:fired", "2:flapped", "4:flapped"]
    assert det.state("lb-01", "http") is State.RECOVERING


def test_errors_are_not_failures_but_become_unreachable() -> None:
    det = Detector(unreachable_after=3)
    events = feed(
        det,
        [
            (0, Status.ERROR),
            (1, Status.ERROR),
            (2, Status.ERROR),
            (3, Status.ERROR),
            (4, Status.OK),
        ],
    )
    assert events == ["2:unreachable", "4:reachable"]
    assert det.state("lb-01", "http") is State.OK


def test_error_while_firing_keeps_firing() -> None:
    det = Detector()
    feed(det, [(0, Status.FAIL), (1, Status.ERROR)])
    assert det.state("lb-01", "http") is State.FIRING


def test_assume_firing_lets_a_restarted_daemon_recover() -> None:
    det = Detector()
    det.assume_firing("lb-01", "http", T0, Fault.PORT_CLOSED)
    sigs = []
    for t in (10, 16):
        sigs += det.observe(obs(t, Status.OK), 0.0, 5.0)
    assert [s.kind for s in sigs] == [SignalKind.RECOVERED]


def test_a_reload_that_drops_a_host_forgets_its_tracks(tmp_path: Path) -> None:
    """A host a reload removes must not keep a firing track: brought back by a later
    reload, it would recover (or not) on samples from before it left."""
    config = tmp_path / "recorder.yml"

    def write(hosts: list[str]) -> None:
        listed = "".join(f"  {h}: {{local: {{}}}}\n" for h in hosts)
        config.write_text(
            f"timezone: UTC\nstate_dir: {tmp_path / 'state'}\nlisten: 127.0.0.1:{free_port()}\n"
            f"hosts:\n{listed}"
        )

    write(["lb-01", "web-01"])
    daemon = Daemon(str(config))
    try:
        for host in ("lb-01", "web-01"):
            daemon.detector.assume_firing(host, "http", T0, Fault.PORT_CLOSED)
        write(["lb-01"])
        daemon._reload()
        assert set(daemon.detector.states()) == {("lb-01", "http")}
    finally:
        if daemon.scheduler:
            daemon.scheduler.stop()
        daemon.store.close()


def test_a_wall_clock_step_does_not_stretch_recover_after_nor_cut_for() -> None:
    # recover_after was timed on the wall clock: a step back of an hour while recovering
    # kept a finished outage open for about an hour (#22.16). Durations use the monotonic
    # time the scheduler stamps on each observation; the wall time is only shown.
    step = timedelta(hours=1)

    def sample(
        det: Detector, mono: float, status: Status, wall: timedelta = timedelta(0), for_: float = 0
    ) -> list[Signal]:
        taken = Observation(
            host="lb-01",
            probe="http",
            status=status,
            summary=str(status),
            fault=Fault.PORT_CLOSED if status is Status.FAIL else None,
            at=T0 + timedelta(seconds=mono) + wall,
            mono=1000.0 + mono,
        )
        return det.observe(taken, for_, 5.0)

    det = Detector()
    assert [s.kind for s in sample(det, 0, Status.FAIL)] == [SignalKind.FIRED]
    assert sample(det, 1, Status.OK) == []  # recovering from here (shown as T0+1s)
    assert sample(det, 3, Status.OK, -step) == []  # the wall clock jumps back an hour
    assert sample(det, 5, Status.OK, -step) == []
    (recovered,) = sample(det, 6, Status.OK, -step)
    assert recovered.kind is SignalKind.RECOVERED
    assert recovered.since == T0 + timedelta(seconds=1)  # the wall time, for display

    # A step forward does not cut `for` short either.
    det = Detector()
    assert sample(det, 0, Status.FAIL, for_=10) == []
    assert sample(det, 2, Status.FAIL, step, for_=10) == []
    assert det.state("lb-01", "http") is State.PENDING
    (fired,) = sample(det, 10, Status.FAIL, step, for_=10)
    assert fired.kind is SignalKind.FIRED and fired.since == T0


def test_the_scheduler_stamps_each_observation_with_the_monotonic_clock() -> None:
    from probes.http import Config as HttpConfig
    from recorder.hosts.local import LocalHost
    from recorder.scheduler import run_probe
    from tests.conftest import free_port

    before = time.monotonic()
    url = f"http://127.0.0.1:{free_port()}/"
    taken = run_probe(LocalHost("lb-01"), "http", HttpConfig(url=url))
    assert taken.mono is not None and before <= taken.mono <= time.monotonic()
