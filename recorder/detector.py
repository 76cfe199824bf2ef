"""The detector: one small state machine per (host, probe) signal.

    ok -> pending (failing for less than `for`) -> firing -> recovering (ok again for
    less than `recover_after`) -> ok

`for: 0s` fires on the first failed sample. A failure while recovering is a flap: the
signal goes back to firing without a new incident. An `error` observation (we could not
look) is not a failure of the site: it leaves the state alone, and `unreachable_after`
errors in a row raise a separate, lower-severity signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from probes.base import Fault, Observation, Status


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"


class SignalKind(StrEnum):
    FIRED = "fired"  # harm confirmed: open or join an incident
    FLAPPED = "flapped"  # failing again within recover_after: same incident
    RECOVERED = "recovered"  # healthy for recover_after
    UNREACHABLE = "unreachable"  # we could not look, several times in a row
    REACHABLE = "reachable"  # we can look again


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    host: str
    probe: str
    observation: Observation
    # For FIRED/FLAPPED: the first failed sample; for RECOVERED: the first healthy one.
    since: datetime
    fault: Fault | None = None
    flaps: int = 0

    @property
    def key(self) -> str:
        return f"{self.probe}@{self.host}"


@dataclass
class _Track:
    state: State = State.OK
    since: datetime | None = None  # when the current state's condition started (shown)
    since_mono: float | None = None  # the same on the monotonic clock (timed)
    fault: Fault | None = None
    flaps: int = 0
    errors: int = 0
    unreachable: bool = False


class Detector:
    def __init__(self, unreachable_after: int = 3) -> None:
        self.unreachable_after = unreachable_after
        self._tracks: dict[tuple[str, str], _Track] = {}

    def state(self, host: str, probe: str) -> State:
        track = self._tracks.get((host, probe))
        return track.state if track else State.OK

    def states(self) -> dict[tuple[str, str], State]:
        return {k: t.state for k, t in self._tracks.items()}

    def assume_firing(self, host: str, probe: str, since: datetime, fault: Fault | None) -> None:
        """Seed a signal as firing: a restarted daemon continues its open incidents, so
        their signals must recover through the state machine, not start from ok."""
        self._tracks[(host, probe)] = _Track(state=State.FIRING, since=since, fault=fault)

    def forget_host(self, host: str) -> None:
        for key in [k for k in self._tracks if k[0] == host]:
            del self._tracks[key]

    def observe(self, obs: Observation, for_: float, recover_after: float) -> list[Signal]:
        track = self._tracks.setdefault((obs.host, obs.probe), _Track())
        if obs.status is Status.ERROR:
            return self._on_error(track, obs)
        signals: list[Signal] = []
        if track.unreachable:
            track.unreachable = False
            signals.append(Signal(SignalKind.REACHABLE, obs.host, obs.probe, obs, obs.at))
        track.errors = 0
        if obs.status is Status.FAIL:
            signals.extend(self._on_fail(track, obs, for_))
        else:
            signals.extend(self._on_ok(track, obs, recover_after))
        return signals

    def _on_error(self, track: _Track, obs: Observation) -> list[Signal]:
        track.errors += 1
        if track.errors >= self.unreachable_after and not track.unreachable:
            track.unreachable = True
            return [Signal(SignalKind.UNREACHABLE, obs.host, obs.probe, obs, obs.at)]
        return []

    def _on_fail(self, track: _Track, obs: Observation, for_: float) -> list[Signal]:
        if track.state is State.OK:
            track.state, track.since, track.fault = State.PENDING, obs.at, obs.fault
            track.since_mono = obs.mono
        elif track.state is State.RECOVERING:
            track.state, track.flaps = State.FIRING, track.flaps + 1
            track.fault = obs.fault or track.fault
            return [
                Signal(SignalKind.FLAPPED, obs.host, obs.probe, obs, obs.at, obs.fault, track.flaps)
            ]
        elif track.state is State.FIRING:
            track.fault = obs.fault or track.fault
            return []
        assert track.since is not None
        if track.state is State.PENDING and _elapsed(track, obs) >= for_:
            track.state = State.FIRING
            return [Signal(SignalKind.FIRED, obs.host, obs.probe, obs, track.since, obs.fault)]
        return []

    def _on_ok(self, track: _Track, obs: Observation, recover_after: float) -> list[Signal]:
        if track.state is State.PENDING:
            track.state, track.since, track.since_mono = State.OK, None, None
        elif track.state is State.FIRING:
            track.state, track.since, track.since_mono = State.RECOVERING, obs.at, obs.mono
        if track.state is State.RECOVERING:
            assert track.since is not None
            if _elapsed(track, obs) >= recover_after:
                since = track.since
                track.state, track.since, track.since_mono, track.flaps = State.OK, None, None, 0
                return [Signal(SignalKind.RECOVERED, obs.host, obs.probe, obs, since, track.fault)]
        return []


def _elapsed(track: _Track, obs: Observation) -> float:
    """Seconds since the track's condition started: on the monotonic clock when both ends
    carry it (a wall-clock step back kept a finished outage open for the size of the step),
    else on the observations' wall times."""
    if track.since_mono is not None and obs.mono is not None:
        return obs.mono - track.since_mono
    assert track.since is not None
    return (obs.at - track.since).total_seconds()
