"""The incident as the rest of the system sees it: what the store keeps, the CLI and API
print, and the postmortem drafter renders. Times are UTC-aware datetimes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from probes.facts import Subjects


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


class SignalState(StrEnum):
    """Where a signal that joined an incident is: the incident resolves once all recovered.
    (The detector's own states, pending and recovering, never reach an incident.)"""

    FIRING = "firing"
    RECOVERED = "recovered"


# The keys of a signal's row in the order the recorder has always written them (a new
# signal's keys, then those added as it went on: heard, ends_at, recovered_at), so a row
# read and written again is the same bytes.
_STATE_NAMES = frozenset(str(s) for s in SignalState)
_SIGNAL_KEYS = (
    "host",
    "probe",
    "fault",
    "state",
    "since",
    "flaps",
    "summary",
    "subjects",
    "heard",
    "ends_at",
    "recovered_at",
)


@dataclass(frozen=True)
class SignalRecord:
    """One signal that joined an incident (a check of a host, or an Alertmanager alert),
    as the incident keeps it: a row of the store's `signals` table (migration 4)."""

    host: str
    probe: str
    fault: str | None  # the fault's name as the probe or alert said it
    state: SignalState
    since: datetime | None  # when it began failing (None: a row that never said)
    summary: str
    # How often it failed again within recover_after. None: a monitoring gap (we could
    # not look), which cannot flap and whose row has no such key.
    flaps: int | None = None
    # What it named (probes/facts.py), for the runbooks' task values; None: a gap's row.
    subjects: Subjects | None = None
    heard: datetime | None = None  # an alert: when Alertmanager last sent it firing
    ends_at: datetime | None = None  # an alert that carries an end: its lease
    recovered_at: datetime | None = None
    # Keys this version does not know (a newer recorder's), kept and written back after
    # the known ones: a restart rewrites every signal row of an open incident, and that
    # must not drop what another version recorded.
    extra: Mapping[str, Any] = field(default_factory=dict)
    # A state this version does not know (a newer recorder's "silenced", say): read as
    # firing, written back as it was while it stays firing here, so a restart of this
    # version does not rewrite the newer one's row. The same for keys of `subjects`.
    unknown_state: str | None = None
    unknown_subjects: Mapping[str, Any] = field(default_factory=dict)

    @property
    def firing(self) -> bool:
        return self.state is SignalState.FIRING

    def recovered(self, at: datetime) -> SignalRecord:
        return replace(self, state=SignalState.RECOVERED, recovered_at=at)

    def to_json(self) -> dict[str, Any]:
        """The row's body, key for key as the recorder wrote signals before they were typed
        (absent keys stay absent)."""
        out: dict[str, Any] = {
            "host": self.host,
            "probe": self.probe,
            "fault": self.fault,
            "state": (
                self.unknown_state
                if self.unknown_state is not None and self.state is SignalState.FIRING
                else str(self.state)
            ),
            "since": iso(self.since),
        }
        if self.flaps is not None:
            out["flaps"] = self.flaps
        out["summary"] = self.summary
        if self.subjects is not None:
            known = self.subjects.to_json()
            out["subjects"] = {
                **known,
                **{k: v for k, v in self.unknown_subjects.items() if k not in known},
            }
        for key, at in (
            ("heard", self.heard),
            ("ends_at", self.ends_at),
            ("recovered_at", self.recovered_at),
        ):
            if at is not None:
                out[key] = iso(at)
        out.update((k, v) for k, v in self.extra.items() if k not in out)
        return out

    @classmethod
    def from_json(cls, data: Any) -> SignalRecord | None:
        """From a row's body as any version wrote it; None when it is not an object. A
        state this version does not know reads as firing: the check's next healthy result
        recovers it, where reading it as recovered could resolve an incident whose harm
        goes on. A time that does not parse reads as absent."""
        if not isinstance(data, Mapping):
            return None
        state = data.get("state")
        flaps, fault = data.get("flaps"), data.get("fault")
        subjects = data.get("subjects")
        known_subjects = Subjects().to_json().keys()
        return cls(
            host=str(data.get("host") or ""),
            probe=str(data.get("probe") or ""),
            fault=str(fault) if fault else None,
            state=SignalState(state) if state == "recovered" else SignalState.FIRING,
            since=_time(data.get("since")),
            summary=str(data.get("summary") or ""),
            flaps=flaps if isinstance(flaps, int) and not isinstance(flaps, bool) else None,
            subjects=Subjects.from_json(data["subjects"]) if "subjects" in data else None,
            heard=_time(data.get("heard")),
            ends_at=_time(data.get("ends_at")),
            recovered_at=_time(data.get("recovered_at")),
            extra={k: v for k, v in data.items() if k not in _SIGNAL_KEYS},
            unknown_state=(state if isinstance(state, str) and state not in _STATE_NAMES else None),
            unknown_subjects=(
                {k: v for k, v in subjects.items() if k not in known_subjects}
                if isinstance(subjects, Mapping)
                else {}
            ),
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _time(value: Any) -> datetime | None:
    try:
        return parse_iso(value) if isinstance(value, str) else None
    except ValueError:
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
    # The signals that joined it, by key (`probe@host`, `alert:<fingerprint>`), in the
    # order they joined: rows of their own in the store.
    signals: dict[str, SignalRecord] = field(default_factory=dict)
    # Engine bookkeeping: checks ruled out, last evidence, the clients merged. Read the
    # typed parts through the properties.
    data: dict[str, Any] = field(default_factory=dict)
    # What people wrote when closing: root cause, resolution, misleading, escalated_to.
    postmortem: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"

    # The engine's bookkeeping, read and written by name: each is a key of `data` (the
    # incident row's JSON column, as before they were named: no migration).

    @property
    def planned(self) -> bool:
        """Harm inside a maintenance window: recorded, and nobody was paged."""
        return bool(self.data.get("planned", False))

    @planned.setter
    def planned(self, value: bool) -> None:
        self.data["planned"] = value

    @property
    def opened_fault(self) -> str | None:
        """The fault it opened with (the top cause can change after); the stats count it."""
        return _text(self.data.get("opened_fault"))

    @opened_fault.setter
    def opened_fault(self, value: str | None) -> None:
        self.data["opened_fault"] = value

    @property
    def seen_terms(self) -> dict[str, list[str]]:
        """Every evidence term seen while it was open, with its lines: what failed earlier
        still counts in the ranking. The stored mapping itself: changes to it are kept."""
        terms = self.data.get("seen_terms")
        if not isinstance(terms, dict):
            terms = self.data["seen_terms"] = {}
        return terms

    @property
    def affected_clients(self) -> Any:
        """The clients merged since it started (incidents.ClientMerge's JSON), or None:
        kept so a restarted daemon continues counting instead of starting again."""
        return self.data.get("affected_clients")

    @affected_clients.setter
    def affected_clients(self, value: dict[str, Any]) -> None:
        self.data["affected_clients"] = value

    @property
    def top_fault(self) -> str | None:
        """The top root cause as last ranked, since `top_since`."""
        return _text(self.data.get("top_fault"))

    @property
    def top_since(self) -> datetime | None:
        return _time(self.data.get("top_since"))

    def rank_top(self, fault: str | None, at: datetime) -> None:
        self.data["top_fault"], self.data["top_since"] = fault, iso(at)

    @property
    def notified_fault(self) -> str | None:
        """The top root cause people were last told of (`cause-changed`)."""
        return _text(self.data.get("notified_fault"))

    @notified_fault.setter
    def notified_fault(self, value: str | None) -> None:
        self.data["notified_fault"] = value

    @property
    def cause_changes(self) -> int:
        """How many `cause-changed` notices it gave (each one's key is numbered)."""
        value = self.data.get("cause_changes")
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    @cause_changes.setter
    def cause_changes(self, value: int) -> None:
        self.data["cause_changes"] = value

    @property
    def notified_step(self) -> float | None:
        """The affected-share step people were last told of; None before the first
        measure (the baseline, told nothing)."""
        value = self.data.get("notified_step")
        return float(value) if isinstance(value, int | float) else None

    @notified_step.setter
    def notified_step(self, value: float) -> None:
        self.data["notified_step"] = value

    @property
    def opened_on_risk(self) -> bool:
        """Opened on a risk, not on harm: `nginx -t` fails while the running nginx keeps
        serving its last good configuration. Users are hurt only from `harm_began` on,
        when a later check measured it (nginx restarted and down, errors in the log)."""
        return bool(self.data.get("risk", False))

    @opened_on_risk.setter
    def opened_on_risk(self, value: bool) -> None:
        self.data["risk"] = value

    @property
    def harm_began(self) -> datetime | None:
        """When users were first hurt by what the recorder measured: `started_at`, or for
        an incident opened on a risk the first harm measured after it (None while none
        was: no failed user request is known)."""
        if not self.opened_on_risk:
            return self.started_at
        return _time(self.data.get("harm_began"))

    @harm_began.setter
    def harm_began(self, value: datetime) -> None:
        self.data["harm_began"] = iso(value)

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
