"""What a probe states as data beside its prose: the typed part of an `Observation`.

`summary` and `details` are for people (and `--json` readers); the engine, the metrics and
the postmortem drafter read these instead, so nothing above `probes/` parses a summary or
looks up a details key by name to learn what a probe found.

- `Subjects`: what the finding is about, named as the runbooks' task placeholders name it
  (`{site}`, `{file}`, `{line}`, `{backend}`, `{url}`).
- `LogCounters`: an access log's cumulative counts (lines, rotations, responses by status
  class), for counters that never fall.
- `ClientHarm`: the clients seen and the clients hurt over a stated window of the log.
- `error_ratio`, `first_5xx`: the share of requests answered 5xx over that window, and
  the first 5xx in it (harm began no later).
- `dead_weight`: the share of an upstream's weight on backends that do not answer.
- `reason`: why the probe could not look (an `error` observation), in a few words.
- `terms`: ranking terms the probe asserts beyond its own `probe:fault` (the error_rate
  probe's `rate:above-baseline`, decided with its own configured factor), each with the
  evidence line that supports it.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class ClientHarm:
    """Distinct clients in a window of the log, and those that got at least one 5xx."""

    clients: int
    hurt: int
    window_start: datetime | None = None
    window_end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "hurt": self.hurt,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
        }


@dataclass(frozen=True)
class Facts:
    subjects: Subjects = field(default_factory=Subjects)
    counters: LogCounters | None = None
    clients: ClientHarm | None = None
    terms: dict[str, str] = field(default_factory=dict)  # ranking term -> its evidence
    error_ratio: float | None = None
    first_5xx: datetime | None = None
    dead_weight: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects.to_json(),
            "counters": self.counters.to_json() if self.counters else None,
            "clients": self.clients.to_json() if self.clients else None,
            "error_ratio": self.error_ratio,
            "first_5xx": self.first_5xx.isoformat() if self.first_5xx else None,
            "dead_weight": self.dead_weight,
            "reason": self.reason,
            "terms": dict(self.terms),
        }
