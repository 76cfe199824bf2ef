"""What a probe states as data beside its prose: the typed part of an `Observation`.

`summary` and `details` are for people (and `--json` readers); the engine, the metrics and
the postmortem drafter read these instead, so nothing above `probes/` parses a summary or
looks up a details key by name to learn what a probe found.

- `Subjects`: what the finding is about, named as the runbooks' task placeholders name it
  (`{site}`, `{file}`, `{line}`, `{backend}`, `{url}`).
- `LogCounters`: an access log's cumulative counts (lines, rotations, responses by status
  class), for counters that never fall.
- `ClientHarm`: the clients seen and the clients hurt (a 5xx; a slow response, when the
  log says how long requests took) over a stated window of the log, and, per second of
  the log this observation read, the clients seen and hurt in it as mergeable summaries
  (`ClientSketch`), so the engine can count distinct clients over a whole incident by
  merging observations.
- `error_ratio`, `first_5xx`: the share of requests answered 5xx over that window, and
  the first 5xx in it (harm began no later).
- `first_slow`: when the first slow response in that window began (its log line's time
  minus its duration): harm of slow responses began no later.
- `dead_weight`: the share of an upstream's weight on backends that do not answer.
- `reason`: why the probe could not look (an `error` observation), in a few words.
- `terms`: ranking terms the probe asserts beyond its own `probe:fault` (the error_rate
  probe's `rate:above-baseline`, decided with its own configured factor), each with the
  evidence line that supports it.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
ABOVE_BASELINE = "rate:above-baseline"


@dataclass(frozen=True)
class Subjects:
    """What a finding names. Several values (two dead backends) are kept in order."""

    site: tuple[str, ...] = ()
    file: tuple[str, ...] = ()
    line: int | None = None  # in the first `file`
    backend: tuple[str, ...] = ()
    url: str | None = None

    def __bool__(self) -> bool:
        return bool(self.site or self.file or self.backend or self.url)

    def placeholders(self) -> dict[str, str]:
        """Values for the runbooks' placeholders; a name nothing filled is left out."""
        values: dict[str, str] = {}
        if self.site:
            values["site"] = ", ".join(self.site)
        if self.file:
            values["file"] = ", ".join(self.file)
            if self.line is not None and len(self.file) == 1:
                values["line"] = str(self.line)
        if self.backend:
            values["backend"] = ", ".join(self.backend)
        if self.url:
            values["url"] = self.url
        return values

    def to_json(self) -> dict[str, Any]:
        return {
            "site": list(self.site),
            "file": list(self.file),
            "line": self.line,
            "backend": list(self.backend),
            "url": self.url,
        }

    @classmethod
    def from_json(cls, data: Any) -> Subjects:
        """From `to_json` output as stored with an incident; anything else is empty."""
        if not isinstance(data, dict):
            return cls()

        def names(key: str) -> tuple[str, ...]:
            value = data.get(key)
            if not isinstance(value, list):
                return ()
            return tuple(str(v) for v in value if isinstance(v, str) and v)

        line, url = data.get("line"), data.get("url")
        return cls(
            site=names("site"),
            file=names("file"),
            line=line if isinstance(line, int) and not isinstance(line, bool) else None,
            backend=names("backend"),
            url=url if isinstance(url, str) and url else None,
        )


@dataclass(frozen=True)
class LogCounters:
    """Cumulative counts of one access log since the recorder began reading it (carried
    across restarts by the probe's saved state). `responses` is by status class, in the
    order of STATUS_CLASSES, counting every line that has a status."""

    lines: int = 0
    rotations: int = 0
    responses: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)

    def by_class(self) -> dict[str, int]:
        return dict(zip(STATUS_CLASSES, self.responses, strict=True))

    def to_json(self) -> dict[str, Any]:
        return {"lines": self.lines, "rotations": self.rotations, "responses": self.by_class()}


# ---- distinct clients, mergeable -----------------------------------------------------------

SKETCH_EXACT_MAX = 1024  # ids kept exactly up to this many; beyond, a HyperLogLog
HLL_BITS = 12  # 4,096 registers of one byte: a standard error of 1.04/64, about 1.6%
HLL_REGISTERS = 1 << HLL_BITS
_HLL_REST = 64 - HLL_BITS
HLL_ERROR = 1.04 / math.sqrt(HLL_REGISTERS)


def client_id(client: bytes) -> int:
    """A client address as a 64-bit hash: what a sketch holds instead of the address."""
    return int.from_bytes(hashlib.blake2b(client, digest_size=8).digest(), "big")


class ClientSketch:
    """A set of distinct clients that merges by union and stays bounded.

    Up to SKETCH_EXACT_MAX clients it is the exact set of their 64-bit hashes (a
    collision among n clients has odds of about n^2 / 2^65: none in practice), so small
    sites and the lab get exact counts. Past that it turns into a HyperLogLog of 4,096
    one-byte registers (4 KiB whatever the number of clients; estimate within about
    1.6% (one standard error) of the true count, 3.3% at two). Both forms merge with
    each other (union is max of registers), and adding a client twice changes nothing,
    so merging the same observation twice (a restart re-reading lines) is harmless."""

    __slots__ = ("ids", "registers")

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids: set[int] | None = set(ids)
        self.registers: bytearray | None = None
        if len(self.ids) > SKETCH_EXACT_MAX:
            self._to_hll()

    @property
    def exact(self) -> bool:
        return self.registers is None

    def copy(self) -> ClientSketch:
        other = ClientSketch()
        other.ids = set(self.ids) if self.ids is not None else None
        other.registers = bytearray(self.registers) if self.registers is not None else None
        return other

    def _to_hll(self) -> None:
        ids, self.ids = self.ids or set(), None
        self.registers = bytearray(HLL_REGISTERS)
        self._add_hll(ids)

    def _add_hll(self, ids: Iterable[int]) -> bool:
        registers = self.registers
        assert registers is not None
        changed = False
        for h in ids:
            index = h >> _HLL_REST
            rank = _HLL_REST - (h & ((1 << _HLL_REST) - 1)).bit_length() + 1
            if rank > registers[index]:
                registers[index] = rank
                changed = True
        return changed

    def add(self, ids: Iterable[int]) -> bool:
        """Add client ids; whether anything changed."""
        if self.ids is not None:
            before = len(self.ids)
            self.ids.update(ids)
            if len(self.ids) > SKETCH_EXACT_MAX:
                self._to_hll()
                return True
            return len(self.ids) != before
        return self._add_hll(ids)

    def merge(self, other: ClientSketch) -> bool:
        """Union with `other` (left unchanged); whether this sketch changed."""
        if other.ids is not None:
            return self.add(other.ids)
        assert other.registers is not None
        if self.ids is not None:
            self._to_hll()
        mine = self.registers
        assert mine is not None
        merged = bytearray(map(max, mine, other.registers))
        if merged == mine:
            return False
        self.registers = merged
        return True

    def count(self) -> int:
        """The number of distinct clients: exact, or the HyperLogLog estimate."""
        if self.ids is not None:
            return len(self.ids)
        registers = self.registers
        assert registers is not None
        m = HLL_REGISTERS
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / math.fsum(2.0**-r for r in registers)
        zeros = registers.count(0)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting: better while sparse
        return round(estimate)

    def to_json(self) -> dict[str, Any]:
        if self.ids is not None:
            packed = b"".join(i.to_bytes(8, "big") for i in sorted(self.ids))
            return {"ids": base64.b64encode(packed).decode()}
        assert self.registers is not None
        return {"hll": base64.b64encode(bytes(self.registers)).decode(), "bits": HLL_BITS}

    @classmethod
    def from_json(cls, data: Any) -> ClientSketch | None:
        """From `to_json` output as stored with an incident; None if it is not one."""
        if not isinstance(data, dict):
            return None
        try:
            if isinstance(data.get("ids"), str):
                raw = base64.b64decode(data["ids"], validate=True)
                if len(raw) % 8:
                    return None
                return cls(int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8))
            if isinstance(data.get("hll"), str) and data.get("bits") == HLL_BITS:
                raw = base64.b64decode(data["hll"], validate=True)
                if len(raw) != HLL_REGISTERS or max(raw) > _HLL_REST + 1:
                    return None
                sketch = cls()
                sketch.ids, sketch.registers = None, bytearray(raw)
                return sketch
        except ValueError:
            return None
        return None


@dataclass(frozen=True)
class ClientSecond:
    """The clients in one second of the log (epoch seconds, by the log's timestamps) that
    an observation read: all of them, those that got at least one 5xx, and those that
    got at least one response slower than the probe's `slow` (None when the log does not
    say how long requests took: unknown, not none)."""

    second: int
    seen: ClientSketch
    hurt: ClientSketch
    slow: ClientSketch | None = None


@dataclass(frozen=True)
class ClientHarm:
    """Distinct clients in a window of the log, and those that got at least one 5xx.

    `seconds` holds what is needed to count over longer than the window: per second of
    the log read by this observation (new lines, and after a restart the lines re-read to
    rebuild the window), the clients seen and hurt, as sketches that merge by union."""

    clients: int
    hurt: int
    window_start: datetime | None = None
    window_end: datetime | None = None
    seconds: tuple[ClientSecond, ...] = ()
    # Clients with at least one response slower than `slow_above` seconds; both None
    # when the log's format has no request time (the share of slow clients is unknown).
    slow: int | None = None
    slow_above: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "hurt": self.hurt,
            "slow": self.slow,
            "slow_above": self.slow_above,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "seconds_read": len(self.seconds),
        }


@dataclass(frozen=True)
class Facts:
    subjects: Subjects = field(default_factory=Subjects)
    counters: LogCounters | None = None
    clients: ClientHarm | None = None
    terms: dict[str, str] = field(default_factory=dict)  # ranking term -> its evidence
    error_ratio: float | None = None
    first_5xx: datetime | None = None
    # When the first slow response in the window began (its line's time minus its
    # duration): harm of slow responses began no later.
    first_slow: datetime | None = None
    dead_weight: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects.to_json(),
            "counters": self.counters.to_json() if self.counters else None,
            "clients": self.clients.to_json() if self.clients else None,
            "error_ratio": self.error_ratio,
            "first_5xx": self.first_5xx.isoformat() if self.first_5xx else None,
            "first_slow": self.first_slow.isoformat() if self.first_slow else None,
            "dead_weight": self.dead_weight,
            "reason": self.reason,
            "terms": dict(self.terms),
        }
