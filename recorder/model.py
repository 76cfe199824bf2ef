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


class EntryKind(StrEnum):
    IMPACT_START = "impact-start"
    DETECTION = "detection"
    ACTION = "action"
    MISLEADING = "misleading"
    ESCALATION = "escalation"
    RESOLUTION = "resolution"
    DEPLOY = "deploy"
    MAINTENANCE = "maintenance"
    NOTE = "note"


# What `recorder note --kind` accepts: the kinds a person writes.
NOTE_KINDS = ("action", "misleading", "escalation", "resolution", "note")


@dataclass
class TimelineEntry:
    at: datetime
    kind: str
    text: str
    source: str
    # Unique per incident: makes writing the same entry twice (a restart, a retried
    # save, a repeated webhook) a no-op instead of a duplicate.
    key: str = ""

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


@dataclass
class Incident:
    id: int
    status: str
    title: str
    service: str
    fault: str | None
    started_at: datetime
    detected_at: datetime
    hosts: list[str] = field(default_factory=list)
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    severity: str = "outage"  # or "monitoring": we could not look, not the site is down
    affected: Affected = field(default_factory=Affected)
    root_causes: list[Cause] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    # Engine bookkeeping: signals that joined it, flaps, checks ruled out, last evidence.
    data: dict[str, Any] = field(default_factory=dict)
    # What people wrote when closing: root cause, resolution, misleading, escalated_to.
    postmortem: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"

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
            "detected_at": iso(self.detected_at),
            "resolved_at": iso(self.resolved_at),
            "closed_at": iso(self.closed_at),
            "planned": bool(self.data.get("planned", False)),
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


def local_time(value: datetime, zone: ZoneInfo, seconds: bool = True) -> str:
    """`2026-11-23 14:30:05 EAT`: always with the zone written out (UTC for a stored time
    that cannot be shown in the zone)."""
    local = in_zone(value, zone)
    clock = f"{local.hour:02d}:{local.minute:02d}" + (f":{local.second:02d}" if seconds else "")
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
