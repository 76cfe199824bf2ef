"""The affected share over a whole incident, from the real error_rate probe.

The share of users hurt is the distinct clients that got a 5xx between the incident's
start and its resolution, over the distinct clients seen in that time; not the worst
single window (#22.15). The log here is written second by second as the lab's traffic
generator writes it (request k from client k mod N) and the lab's app fails requests
(a client fails when its hashed bucket is below the rate), with a rate that changes over
time; the real probe reads it and the real incident book merges its observations. The
truth is counted from the lines written.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from probes import error_rate
from probes.base import Fault, Status
from probes.facts import HLL_ERROR, SKETCH_EXACT_MAX, ClientSketch, client_id
from recorder.hosts.local import LocalHost
from recorder.lab.app import client_fails
from recorder.model import Incident
from tests.test_incidents import T0, Harness

WINDOW = 10.0
RECOVER = 5.0


def _line(client: str, status: int, second: int) -> str:
    when = (T0 + timedelta(seconds=second)).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'{client} - - [{when}] "GET / HTTP/1.1" {status} 5 "-" "curl"\n'


def run(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    rates: list[float],
    *,
    clients: int,
    rps: int,
    restart_at: int | None = None,
    refused: range = range(0),
    window: float = WINDOW,
) -> tuple[Incident, float]:
    """10 s healthy, then one second per rate, then healthy until the incident resolves.
    Returns the incident and the true share over its start to its resolution."""
    now = [T0]
    monkeypatch.setattr(error_rate, "clock", lambda: now[0].timestamp())
    memory = error_rate.LogState()  # what the probe's job keeps between runs
    log = root / "var/log/nginx/access.log"
    log.parent.mkdir(parents=True)
    log.touch()
    host = LocalHost("lb-01", prefix=str(root))
    config = error_rate.Config(window=window, min_requests=5, state_dir=str(root / "probe-state"))
    h = Harness(root / "state")
    lines: list[tuple[int, str, bool]] = []  # second, client, hurt
    schedule = [0.0] * 10 + rates + [0.0] * 40
    k = 0
    for second, rate in enumerate(schedule):
        with log.open("a") as f:
            for _ in range(rps):
                client = f"10.{k % clients // 250}.{k % clients % 250}.1"
                k += 1
                hurt = rate > 0 and client_fails(client, rate)
                lines.append((second, client, hurt))
                f.write(_line(client, 500 if hurt else 200, second))
        now[0] = h.now = T0 + timedelta(seconds=second + 1)
        if restart_at is not None and second == restart_at:
            memory = error_rate.LogState()  # kill -9: the probe's memory is gone too
            h.restart()
        obs = replace(error_rate.probe(host, config, memory), at=h.now)
        assert obs.status is not Status.ERROR, obs.summary
        h.book.observe(obs)
        for sig in h.detector.observe(obs, 0.0, RECOVER):
            h.book.on_signal(sig)
        if refused and second >= refused.start:
            # The balancer's port, as the http probe finds it.
            if second in refused:
                h.feed("lb-01", "http", Status.FAIL, Fault.PORT_CLOSED, "connection refused")
            else:
                h.feed("lb-01", "http", Status.OK)
        h.book.tick()
        incidents = h.store.list()
        if incidents and incidents[0].status == "resolved":
            break
    else:
        raise AssertionError("the incident never resolved")
    incident = h.only_incident()
    assert incident.resolved_at is not None
    start = int((incident.started_at - T0).total_seconds())
    end = int((incident.resolved_at - T0).total_seconds())
    assert start == min(s for s, _, bad in lines if bad), incident.started_at  # first 5xx
    seen = {c for s, c, _ in lines if start <= s <= end}
    hurt = {c for s, c, bad in lines if bad and start <= s <= end}
    return incident, len(hurt) / len(seen)


# Rising and falling: visitors come and go (each client once), the share moves. The
# worst window says the worst moment's share; the incident's share is over everyone.
RISING = [0.1] * 8 + [0.35] * 8 + [0.7] * 8
FALLING = RISING[::-1]
# Intermittent: short bursts while each client comes back every 6 s; each burst hurts
# other visitors, so the harm spreads over most clients while any window holds few.
INTERMITTENT = ([0.7] * 2 + [0.0] * 3) * 4 + [0.7] * 2


@pytest.mark.parametrize(
    ("rates", "clients", "rps", "tolerance"),
    [
        (RISING, 10_000, 20, 0.0),
        (FALLING, 10_000, 20, 0.0),
        (INTERMITTENT, 120, 20, 0.0),
        # Over SKETCH_EXACT_MAX clients: estimated, each count within about 1.6%.
        (RISING, 10_000, 80, 0.03),
    ],
    ids=["rising", "falling", "intermittent", "rising-estimated"],
)
def test_the_share_is_over_the_whole_incident(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rates: list[float],
    clients: int,
    rps: int,
    tolerance: float,
) -> None:
    incident, truth = run(tmp_path, monkeypatch, rates, clients=clients, rps=rps)
    affected = incident.affected
    assert affected.method == "clients-with-5xx"
    assert affected.ratio is not None
    # Exact sets give the truth to the rounding of the ratio (4 places).
    assert abs(affected.ratio - truth) <= tolerance + 1e-4, (affected, truth)
    assert "counted over the incident" in affected.evidence
    assert ("estimated: HyperLogLog" in affected.evidence) is (tolerance > 0)
    # The worst window is kept as a second figure, and it is not the answer.
    assert affected.peak is not None and abs(affected.peak - truth) > 0.1, (affected, truth)


@pytest.mark.parametrize(
    ("rates", "clients", "window"),
    [(INTERMITTENT, 120, WINDOW), (RISING, 10_000, WINDOW), (RISING, 10_000, 3.0)],
    ids=["intermittent", "rising", "rising-window-shorter-than-recovery"],
)
def test_a_restart_mid_incident_continues_the_count(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rates: list[float],
    clients: int,
    window: float,
) -> None:
    """kill -9 halfway: the merged clients are stored with the incident (up to the
    seconds still held back for the resolution) and the probe re-reads what it had read
    before, so nothing seen before the restart is lost or counted twice, even with a
    window shorter than the seconds held back."""
    incident, truth = run(
        tmp_path, monkeypatch, rates, clients=clients, rps=20, restart_at=18, window=window
    )
    assert incident.affected.ratio is not None
    assert abs(incident.affected.ratio - truth) <= 1e-4, (incident.affected, truth)
    assert incident.affected_clients is not None


def test_sketch_exact_then_hyperloglog() -> None:
    small = ClientSketch(client_id(f"10.0.0.{i}".encode()) for i in range(200))
    assert small.exact and small.count() == 200
    again = ClientSketch.from_json(small.to_json())
    assert again is not None and again.exact and again.count() == 200
    assert not again.merge(small)  # a union with itself changes nothing
    big = ClientSketch()
    ids = [client_id(f"2001:db8::{i:x}".encode()) for i in range(100_000)]
    for start in range(0, len(ids), 5000):
        big.merge(ClientSketch(ids[start : start + 5000]))
    assert not big.exact and len(big.to_json()["hll"]) < 6000
    # Within three standard errors, and a merge of exact into estimated is one union.
    assert abs(big.count() - 100_000) <= 3 * HLL_ERROR * 100_000, big.count()
    assert big.merge(small) and abs(big.count() - 100_200) <= 3 * HLL_ERROR * 100_200
    restored = ClientSketch.from_json(big.to_json())
    assert restored is not None and restored.count() == big.count()
    assert ClientSketch(ids[: SKETCH_EXACT_MAX + 1]).exact is False
    assert ClientSketch.from_json({"ids": "not base64!"}) is None
    assert ClientSketch.from_json({"hll": "AAAA", "bits": 12}) is None


def test_an_entry_point_that_refused_connections_keeps_everyone_affected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the balancer refuses connections every client is turned away, and none of
    them reaches the log: the share stays 1.0 once the door opens again and the log
    shows fewer."""
    incident, truth = run(
        tmp_path, monkeypatch, INTERMITTENT, clients=120, rps=20, refused=range(14, 17)
    )
    assert truth < 0.9
    assert incident.affected.ratio == 1.0
    assert incident.affected.method == "entrypoint-unreachable"


def test_the_probe_states_the_clients_of_every_second_it_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First sight: the window's seconds only (no incident counted the history). After a
    pause longer than the window: every new second, older than the window or not, since
    an incident open meanwhile needs them all."""
    now = [T0 + timedelta(seconds=30)]
    monkeypatch.setattr(error_rate, "clock", lambda: now[0].timestamp())
    memory = error_rate.LogState()
    log = tmp_path / "var/log/nginx/access.log"
    log.parent.mkdir(parents=True)
    host = LocalHost("lb-01", prefix=str(tmp_path))
    config = error_rate.Config(window=WINDOW)

    def write(seconds: range) -> None:
        with log.open("a") as f:
            for s in seconds:
                f.write(_line(f"10.0.{s}.1", 500 if s % 2 else 200, s))
                f.write(_line(f"10.0.{s}.2", 200, s))

    write(range(30))
    harm = error_rate.probe(host, config, memory).facts.clients
    assert harm is not None
    base = int(T0.timestamp())
    assert [s.second - base for s in harm.seconds] == list(range(20, 30))
    assert [(s.seen.count(), s.hurt.count()) for s in harm.seconds[:2]] == [(2, 0), (2, 1)]
    write(range(30, 60))
    now[0] = T0 + timedelta(seconds=60)
    harm = error_rate.probe(host, config, memory).facts.clients
    assert harm is not None
    assert [s.second - base for s in harm.seconds] == list(range(30, 60))
    assert harm.seconds[1].hurt.ids == {client_id(b"10.0.31.1")}
    assert error_rate.probe(host, config, memory).facts.clients.seconds == ()  # type: ignore[union-attr]
