"""The incident as the rest of the system sees it: what the store keeps, the CLI and API
print, and the postmortem drafter renders. Times are UTC-aware datetimes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Severity(StrEnum):
    OUTAGE = "outage"  # the site is harmed
    MONITORING = "monitoring"  # we could not look: a gap in monitoring, not harm


class EntryKind(StrEnum):
    """A timeline entry's kind: the vocabulary of the JSON contract (DESIGN.md)."""

    IMPACT_START = "impact-start"
    DETECTION = "detection"
    ACTION = "action"
    MISLEADING = "misleading"
    ESCALATION = "escalation"
    RESOLUTION = "resolution"
    DEPLOY = "deploy"
    MAINTENANCE = "maintenance"
    NOTE = "note"

    @classmethod
    def read(cls, value: str) -> EntryKind:
        """A stored kind; one this version does not know reads as a note."""
        return cls(value) if value in cls._value2member_map_ else cls.NOTE


class Step(StrEnum):
    """What one of the recorder's own entries records, finer than its kind (which stays
    within the contract's vocabulary: these are `note` entries)."""

    FAILED_AGAIN = "flap"  # a signal failed again within recover_after
    ALSO_FAILING = "join"  # another signal joined the open incident
    RECOVERED = "recovered"  # one signal healthy again

    @classmethod
    def read(cls, value: str | None) -> Step | None:
        """A step from the timeline's column; None when unset or unknown to this version."""
        return cls(value) if value is not None and value in cls._value2member_map_ else None

    @classmethod
    def of_legacy_key(cls, key: str) -> Step | None:
        """The step of an entry stored before steps were recorded (their idempotency keys
        began with the step's name); read only for such rows (store.py)."""
        head = key.split(":", 1)[0]
        return cls(head) if head in cls._value2member_map_ and ":" in key else None


# What `recorder note --kind` accepts: the kinds a person writes.
NOTE_KINDS = ("action", "misleading", "escalation", "resolution", "note")


@dataclass(frozen=True)
class Deployed:
    """What a deploy entry records, as `recorder event deploy` stored it (events table)."""

    service: str
    version: str


@dataclass
class TimelineEntry:
    at: datetime
    kind: EntryKind
    text: str
    source: str
    # Unique per incident: makes writing the same entry twice (a restart, a retried
    # save, a repeated webhook) a no-op instead of a duplicate.
    key: str = ""
    step: Step | None = None  # the recorder's own entries: what happened (timeline.step)
    # A deploy entry's service and version, read from its event row: the text is display.
    deployed: Deployed | None = None

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "kind": self.kind, "text": self.text, "source": self.source}


@dataclass
class Task:
    text: str
    done: bool = False


@dataclass
class Cause:
    fault: str
    confidence: float
    evidence: list[str] = field(default_factory=list)


@dataclass
class Affected:
    ratio: float | None = None  # 0..1; None while nothing measured it
    method: str = "unknown"
    evidence: str = "not measured yet"
    peak: float | None = None  # the highest window seen while the incident was open


def diagnostic_key(host: str, probe: str) -> str:
    """The key of the engine's timeline entry for its diagnostic check of `probe` on `host`
    (one per incident)."""
    return f"diag:{probe}@{host}"


@dataclass(frozen=True)
class RuledOut:
    """A check that passed while the incident was open: not the cause."""

    host: str
    probe: str
    summary: str  # the probe's words, for people

    @property
    def key(self) -> str:
        """The key of its timeline entry (the engine's diagnostic entry)."""
        return diagnostic_key(self.host, self.probe)

    def to_json(self) -> dict[str, str]:
        return {"host": self.host, "probe": self.probe, "summary": self.summary}

    @classmethod
    def from_json(cls, value: Any) -> RuledOut | None:
        """From `to_json`, or from the line stored before (`probe on host: summary`)."""
        if isinstance(value, dict):
            host, probe = value.get("host"), value.get("probe")
            if isinstance(host, str) and isinstance(probe, str):
                return cls(host, probe, str(value.get("summary") or ""))
            return None
        if isinstance(value, str) and " on " in value:
            probe, rest = value.split(" on ", 1)
            host, _, summary = rest.partition(": ")
            return cls(host, probe, summary) if probe and host else None
        return None


@dataclass
class Incident:
    id: int
    status: IncidentStatus
    title: str
    service: str
    fault: str | None
    started_at: datetime
    detected_at: datetime
    hosts: list[str] = field(default_factory=list)
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    severity: Severity = Severity.OUTAGE
    affected: Affected = field(default_factory=Affected)
    root_causes: list[Cause] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    # Engine bookkeeping: signals that joined it (stored as rows of their own), flaps,
    # checks ruled out, last evidence. Read the typed parts through the properties.
    data: dict[str, Any] = field(default_factory=dict)
    # What people wrote when closing: root cause, resolution, misleading, escalated_to.
    postmortem: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"

    @property
    def planned(self) -> bool:
        """Harm inside a maintenance window: recorded, and nobody was paged."""
        return bool(self.data.get("planned", False))

    @property
    def opened_on_risk(self) -> bool:
        """Opened on a risk, not on harm: `nginx -t` fails while the running nginx keeps
        serving its last good configuration. Users are hurt only from `harm_began` on,
        when a later check measured it (nginx restarted and down, errors in the log)."""
        return bool(self.data.get("risk", False))

    @property
    def harm_began(self) -> datetime | None:
        """When users were first hurt by what the recorder measured: `started_at`, or for
        an incident opened on a risk the first harm measured after it (None while none
        was: no failed user request is known)."""
        if not self.opened_on_risk:
            return self.started_at
        began = self.data.get("harm_began")
        return parse_iso(began) if isinstance(began, str) else None

    @property
    def status_label(self) -> str:
        """The status as lists and headers print it: `open (planned)` inside a window."""
        return f"{self.status} (planned)" if self.planned else str(self.status)

    @property
    def ruled_out(self) -> list[RuledOut]:
        """The checks that passed while it was open, in the order they were made."""
        found = [RuledOut.from_json(v) for v in self.data.get("ruled_out") or []]
        return [r for r in found if r is not None]

    def rule_out(self, ruled: RuledOut) -> None:
        self.data.setdefault("ruled_out", []).append(ruled.to_json())

    def step_of(self, key: str) -> Step | None:
        """The step of entry `key` when its row has none: as a store of an older version
        recorded it in `data` (a row inserted after migration 4 moved them), else the one
        its key names (written before steps were recorded)."""
        stored = (self.data.get("steps") or {}).get(key)
        if isinstance(stored, str) and stored in Step._value2member_map_:
            return Step(stored)
        return Step.of_legacy_key(key)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ref": self.ref,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "service": self.service,
            "hosts": list(self.hosts),
            "fault": self.fault,
            "started_at": iso(self.started_at),
            # started_at unless the incident opened on a risk (see `harm_began`): then
            # the first measured harm, null while no user was hurt.
            "harm_began_at": iso(self.harm_began),
            "detected_at": iso(self.detected_at),
            "resolved_at": iso(self.resolved_at),
            "closed_at": iso(self.closed_at),
            "planned": self.planned,
            "affected": asdict(self.affected),
            "root_causes": [asdict(c) for c in self.root_causes],
            "timeline": [e.to_json() for e in sorted(self.timeline, key=lambda e: e.at)],
            "tasks": [asdict(t) for t in self.tasks],
            "detection_delay_seconds": round(
                (self.detected_at - self.started_at).total_seconds(), 3
            ),
        }


# The times the recorder takes from outside (alerts, notes, deploys): anything else is a
# wrong clock or a hostile value, and near the ends of datetime's range (years 1 and 9999)
# converting to a zone overflows. Readers still cope with a stored value outside it.
TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)


class TimeRangeError(ValueError):
    """A time outside TIME_MIN..TIME_MAX; str() says which and the range."""


def check_time(value: datetime, what: str = "time") -> datetime:
    """`value` (aware) when within TIME_MIN..TIME_MAX, else TimeRangeError."""
    if not TIME_MIN <= value < TIME_MAX:
        raise TimeRangeError(
            f"{what}: {_plain(value)} is out of range ({TIME_MIN.year} to {TIME_MAX.year - 1}, UTC)"
        )
    return value


def _plain(value: datetime) -> str:
    """`value` as written, without converting it (which may overflow)."""
    day = f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    clock = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    return f"{day} {clock}" + (f" {value.tzname()}" if value.tzinfo else "")


@dataclass
class Notice:
    """A lifecycle event to tell receivers about; the store writes one outbox row per
    receiver in the same transaction as the incident change that produced it."""

    event: str  # one of config.NOTIFY_EVENTS
    key: str  # unique within the incident: the same event twice is one delivery
    at: datetime
    receivers: list[str]
    text: str = ""  # what happened, in words


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    if not value:
        return None
    return in_zone(value, UTC).isoformat(timespec="milliseconds")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def in_zone(value: datetime, zone: tzinfo) -> datetime:
    """`value` in `zone`; in UTC when that would leave datetime's range (a stored time in
    year 9999 east of UTC, or year 1 west of it)."""
    for target in (zone, UTC):
        try:
            return value.astimezone(target)
        except (OverflowError, ValueError):
            continue
    return value


def local_time(value: datetime, zone: ZoneInfo) -> str:
    """`2026-11-23 14:30:05 EAT`: always with the zone written out (UTC for a stored time
    that cannot be shown in the zone)."""
    local = in_zone(value, zone)
    clock = f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    return f"{day} {clock} {local.tzname() or zone.key}"


def duration_words(delta: timedelta) -> str:
    """`45 s`, `22 min 5 s`, `3 h 10 min`."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 120:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"
