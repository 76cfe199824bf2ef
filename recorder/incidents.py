"""The incident book: turns signals into incidents and keeps them current.

One outage is one incident, however many probes notice it: a firing signal joins the open
incident of its service. Its affected share is the distinct clients that got a 5xx between
its start and its resolution over the distinct clients seen then, at the entry points,
merged from the error_rate observations' per-second client sketches (ClientMerge, stored
with the incident); while the entry point refuses connections, everyone (1.0).

While an incident is open the book keeps its evidence, root-cause ranking, affected share
and timeline current, and writes every change to the store before anything reports it.
The in-memory copy only holds what the engine needs to continue; the store is the record,
and a restarted daemon rebuilds the book from it.

Single-threaded by design: the daemon's engine thread is the only caller.
"""

from __future__ import annotations

import copy
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

from probes.base import Fault, Observation, Status
from probes.facts import HLL_ERROR, ClientSecond, ClientSketch
from recorder.alertmanager import Alert, is_stale
from recorder.config import Config
from recorder.detector import Signal, SignalKind
from recorder.display import shown
from recorder.maintenance import Window, covering
from recorder.model import (
    Affected,
    Cause,
    EntryKind,
    Incident,
    IncidentStatus,
    Notice,
    RuledOut,
    Severity,
    SignalRecord,
    SignalState,
    Step,
    TimelineEntry,
    diagnostic_key,
    duration_words,
    iso,
    local_time,
    utcnow,
)
from recorder.ranking import rank_causes
from recorder.runbooks import load_runbooks
from recorder.store import (
    IncidentTaken,
    Store,
    StoreError,
    book_key,
    data_row,
    deploy_entry,
)

log = logging.getLogger("recorder.incidents")

DEPLOY_LOOKBACK = timedelta(minutes=15)  # a deploy this long before harm is a suspect
# Alertmanager sends a firing alert without an end (its webhook zeroes endsAt) and repeats
# it every repeat_interval (4h by default). An alert heard of neither firing again nor
# resolved for three of those has ended without word: its signal ends, so the incident can.
ALERT_SILENCE = timedelta(hours=12)
# An alert that does carry an end (a lease, from a client that sets endsAt) ends this long
# after it unless renewed.
ALERT_LEASE_GRACE = timedelta(minutes=5)
# Firing alerts named as evidence for a cause; the rest are counted ("and 1,995 more").
ALERT_EVIDENCE_LINES = 5
# Log times have whole seconds, so harm can appear to start up to a second before the
# deploy that caused it.
DEPLOY_SLACK = timedelta(seconds=1)
CAUSE_SETTLE = 5.0  # seconds a new top root cause must hold before `cause-changed`
# Per-second client sketches kept per entry point (by the log's time) before an incident
# opens: harm starts up to a probe window before detection (first 5xx in the window).
RECENT_SECONDS = 300
ENTRYPOINT_METHODS = ("entrypoint-unreachable", "entrypoint-unexpected-status")
# The affected share of slow responses: clients with at least one response slower than the
# error_rate probe's `slow` (by the log's request time).
SLOW_METHOD = "clients-with-slow-responses"
# Faults that put users at risk without hurting them: a configuration that fails `nginx -t`
# is not loaded while the running nginx keeps its last good one; the next reload or
# restart fails. A dangling link in sites-enabled is one such configuration (nginx -t
# cannot open the file it includes; the lab's dangling-symlink: the reload is refused and
# the site still answers 200). An incident opened on one claims no user harm until a
# check measures it.
RISK_ONLY = frozenset({Fault.CONFIG_SYNTAX, Fault.DANGLING_SYMLINK})
NO_HARM_METHOD = "no-harm-measured"
RISK_WORDS = (
    "the running nginx keeps serving its last good configuration; a reload or restart would fail"
)
NO_HARM_EVIDENCE = (
    "no failed user requests measured (the running nginx kept serving its last good configuration)"
)
# Faults that mean an entry point answers no one: its port is closed, or nginx is not running.
_NO_ANSWER = frozenset({Fault.PORT_CLOSED, Fault.NGINX_DOWN})


@dataclass
class ClientMerge:
    """The distinct clients at the entry points from an incident's start: all that were
    seen, and those that got at least one 5xx, merged second by second from the
    error_rate observations' `ClientHarm.seconds`."""

    seen: ClientSketch = field(default_factory=ClientSketch)
    hurt: ClientSketch = field(default_factory=ClientSketch)
    first: int | None = None  # the first and last second of the log merged (epoch)
    last: int | None = None
    # Those that got at least one slow response; None while no second merged came from a
    # log that says how long requests took (unknown, not none).
    slow: ClientSketch | None = None

    def add(self, sec: ClientSecond) -> bool:
        changed = self.seen.merge(sec.seen)
        changed = self.hurt.merge(sec.hurt) or changed
        if sec.slow is not None:
            if self.slow is None:
                self.slow, changed = ClientSketch(), True
            changed = self.slow.merge(sec.slow) or changed
        if self.first is None or sec.second < self.first:
            self.first, changed = sec.second, True
        if self.last is None or sec.second > self.last:
            self.last, changed = sec.second, True
        return changed

    def copy(self) -> ClientMerge:
        slow = self.slow.copy() if self.slow is not None else None
        return ClientMerge(self.seen.copy(), self.hurt.copy(), self.first, self.last, slow)

    def to_json(self) -> dict[str, Any]:
        return {
            "seen": self.seen.to_json(),
            "hurt": self.hurt.to_json(),
            "slow": self.slow.to_json() if self.slow is not None else None,
            "first": self.first,
            "last": self.last,
        }

    @classmethod
    def from_json(cls, data: Any) -> ClientMerge | None:
        if not isinstance(data, dict):
            return None
        seen, hurt = (
            ClientSketch.from_json(data.get("seen")),
            ClientSketch.from_json(data.get("hurt")),
        )
        if seen is None or hurt is None:
            return None
        first, last = data.get("first"), data.get("last")
        return cls(
            seen,
            hurt,
            first if isinstance(first, int) and not isinstance(first, bool) else None,
            last if isinstance(last, int) and not isinstance(last, bool) else None,
            ClientSketch.from_json(data.get("slow")),  # absent in stores before it was kept
        )


@dataclass
class _Open:
    """An open incident as the engine works on it."""

    incident: Incident
    pending: list[TimelineEntry] = field(default_factory=list)  # not yet in the store
    notices: list[Notice] = field(default_factory=list)  # written with `pending`
    diagnostics: set[tuple[str, str]] = field(default_factory=set)  # (host, probe) awaited
    causes_said: str = ""  # the ranking last written to the timeline
    written: tuple[Any, ...] | None = None  # the stored fields as last written (see flush)
    # The clients merged since the incident started, up to `clients.last`: seconds of
    # the log older than the hold (see _advance_clients); stored with the incident.
    clients: ClientMerge | None = None
    clients_from: datetime | None = None  # the start the recent seconds were merged from
    clients_view: ClientMerge | None = None  # `clients` and the held seconds: the figure
    affected_merged: bool = False  # incident.affected is the figure over the incident
    # The signals changed since last written: each is a row of its own (store.py
    # migration 4), so a flush writes these, not every signal the incident holds.
    dirty: set[str] = field(default_factory=set)
    # Firing alerts with a fault, by evidence term ("alert:http-5xx"): key -> evidence
    # line. Kept as signals change, so ranking the causes after each alert does not go
    # through every signal the incident holds.
    alerting: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key, sig in self.signals.items():
            self._index(key, sig)

    @property
    def signals(self) -> dict[str, SignalRecord]:
        return self.incident.signals

    def put(self, key: str, sig: SignalRecord) -> None:
        """Set signal `key`; written at the next flush when it changed."""
        was = self.signals.get(key)
        if was != sig:
            if was is not None:
                self.alerting.get(f"alert:{was.fault}", {}).pop(key, None)
            self.signals[key] = sig
            self._index(key, sig)
            self.dirty.add(key)

    def _index(self, key: str, sig: SignalRecord) -> None:
        if sig.probe == "alertmanager" and sig.firing and sig.fault:
            line = f"{sig.host}: {sig.summary}"
            self.alerting.setdefault(f"alert:{sig.fault}", {})[key] = line

    def update(self, key: str, **values: Any) -> None:
        """Change fields of signal `key`; written at the next flush when they changed."""
        self.put(key, replace(self.signals[key], **values))

    def add(
        self,
        at: datetime,
        kind: EntryKind,
        text: str,
        source: str,
        key: str,
        step: Step | None = None,
    ) -> None:
        self.pending.append(
            TimelineEntry(at=at, kind=kind, text=text, source=source, key=key, step=step)
        )


class IncidentBook:
    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], datetime] = utcnow,
        request_diagnostics: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.request_diagnostics = request_diagnostics
        # When each service's last incident resolved here: no slow start moves before it.
        self._resolved: dict[str, datetime] = {}
        self.latest: dict[tuple[str, str], Observation] = {}
        self._open: dict[str, _Open] = {}  # book key (service, or "monitoring:<host>") -> open
        # host -> log second -> its clients: the last RECENT_SECONDS of each log's clients
        self._recent: dict[str, dict[int, ClientSecond]] = {}
        self.store_error: str | None = None
        self._deploys_error: str | None = None
        self._windows_error: str | None = None
        self.on_opened: Callable[[Incident], None] | None = None
        # Created inside a group commit that has not committed yet: said opened only once
        # it has (a rolled-back one never existed; the store gives its id out again).
        self._uncommitted: list[Incident] = []
        # A batch's commit failed and the open incidents could not be read back yet.
        self.stale = False

    # ---- start-up ---------------------------------------------------------------------

    def restore(self) -> list[tuple[str, str, datetime, Fault | None]]:
        """Load open incidents from the store; return their still-firing signals
        (host, probe, since, fault) so the detector can be seeded with them."""
        firing: list[tuple[str, str, datetime, Fault | None]] = []
        known = {o.incident.id for o in self._open.values()}
        for incident in self.store.open_incidents():
            book_key = self._book_key(incident.service, incident.severity, incident.hosts)
            if incident.id in known:
                continue  # called again once the store opens: already continued
            if book_key in self._open:
                # Opened in memory while the store could not be read: two records of
                # one outage. Keep writing ours; the stored one waits for a person.
                log.warning(
                    "%s is open in the store but %s was opened meanwhile; not continuing it",
                    incident.ref,
                    incident.service,
                )
                continue
            clients = ClientMerge.from_json(incident.affected_clients)
            self._open[book_key] = _Open(
                incident=incident,
                causes_said=_causes_line(incident.root_causes),
                clients=clients,
                clients_from=_counted_from(incident) if clients else None,
                clients_view=clients.copy() if clients else None,
                affected_merged=clients is not None
                and incident.affected.method not in ENTRYPOINT_METHODS,
                # Written again as rows on the first flush: an incident stored inside its
                # `data` (a row inserted after migration 4) moves over then.
                dirty=set(incident.signals),
            )
            for sig in incident.signals.values():
                if sig.firing and sig.probe != "alertmanager":
                    since = sig.since or incident.started_at
                    fault = next((f for f in Fault if f == sig.fault), None)
                    firing.append((sig.host, sig.probe, since, fault))
            log.info(
                "continuing %s (%s, opened %s)",
                incident.ref,
                incident.title,
                iso(incident.detected_at),
            )
        return firing

    def snapshot(self) -> tuple[dict[str, _Open], str | None]:
        """Before a batch of alerts: copies of the open incidents whose changes the store
        does not have yet (made while it could not be written), normally none. The rest
        is as stored, so `rollback` reads it back instead: copying every open incident
        before each batch cost more than applying the batch."""
        unsynced = {k: copy.deepcopy(i) for k, i in self._open.items() if not self._in_sync(i)}
        return unsynced, self.store_error

    def _say_opened(self, incident: Incident) -> None:
        if self.on_opened:
            self.on_opened(incident)
        log.warning("opened %s: %s", incident.ref, incident.title)

    def committed(self) -> None:
        """A batch committed: the incidents it created are open now."""
        for incident in self._uncommitted:
            self._say_opened(incident)
        self._uncommitted = []

    def rollback(self, snapshot: tuple[dict[str, _Open], str | None]) -> None:
        """A batch's commit failed, so the store holds none of it: memory is put back to
        what it was before the batch, the stored open incidents and the unsynced copies."""
        for incident in self._uncommitted:
            log.warning(
                "rolled back %s (%s): its group commit failed, it was not opened",
                incident.ref,
                incident.title,
            )
        self._uncommitted = []
        unsynced, self.store_error = snapshot
        self._open = {}
        self.stale = True
        self.reload_open()
        self._open.update(unsynced)

    def reload_open(self) -> bool:
        """Read the open incidents back from the store after a rollback (`stale`); False
        while it cannot be read: alerts are refused until it can (see apply_alert_batches)."""
        if not self.stale:
            return True
        try:
            self.restore()
        except (sqlite3.Error, OSError, StoreError) as exc:
            log.error("cannot read the open incidents back after a failed commit: %s", exc)
            return False
        self.stale = False
        return True

    def _in_sync(self, item: _Open) -> bool:
        """The store holds exactly what memory holds of this incident (see flush)."""
        return bool(
            item.incident.id
            and not item.pending
            and not item.notices
            and not item.dirty
            and _stored_fields(item.incident) == item.written
        )

    def open_incidents(self) -> list[Incident]:
        return [o.incident for o in self._open.values()]

    # ---- inputs -----------------------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        """Every observation passes here: it is evidence for open incidents."""
        self.latest[(obs.host, obs.probe)] = obs
        harm = obs.facts.clients
        if harm is not None and harm.seconds and obs.status is not Status.ERROR:
            self._note_clients(obs.host, harm.seconds)
        if obs.status is not Status.ERROR:
            # We could look: a monitoring gap on this check is over, whatever the detector
            # remembers (after a restart it has no record of the gap and never says so).
            self._on_recovered(obs.host, obs.probe, obs.at, obs.summary, monitoring=True)
        key = f"{obs.probe}@{obs.host}"
        for item in self._open.values():
            sig = item.signals.get(key)
            if sig and sig.firing and obs.status is Status.FAIL:
                # What it names now (a second backend down): the drafter's task values.
                item.update(key, subjects=obs.facts.subjects)
            if (obs.host, obs.probe) in item.diagnostics:
                item.diagnostics.discard((obs.host, obs.probe))
                self._record_diagnostic(item, obs)
            self._slow_began_earlier(item, obs)
            if (
                obs.host in self.config.hosts_of(item.incident.service)
                and item.incident.severity is Severity.OUTAGE
            ):
                self._refresh(item)

    def on_signal(self, sig: Signal) -> None:
        if sig.kind in (SignalKind.FIRED, SignalKind.FLAPPED):
            self._on_firing(sig)
        elif sig.kind is SignalKind.RECOVERED:
            self._on_recovered(sig.host, sig.probe, sig.since, sig.observation.summary)
        elif sig.kind is SignalKind.UNREACHABLE:
            self._on_unreachable(sig)
        elif sig.kind is SignalKind.REACHABLE:
            self._on_recovered(
                sig.host, sig.probe, sig.since, sig.observation.summary, monitoring=True
            )
        self.flush()

    def on_alert(
        self,
        *,
        fingerprint: str,
        firing: bool,
        name: str,
        service: str,
        host: str,
        fault: Fault | None,
        summary: str,
        starts_at: datetime,
        ends_at: datetime | None,
    ) -> int | None:
        """An Alertmanager alert: firing opens or joins, resolved recovers its signal.
        Returns the incident id it landed in (None for a resolved alert we never saw)."""
        key = f"alert:{fingerprint}"
        if firing and service not in self._open and self._window(service, [host], starts_at):
            log.info("alert %s for %s during maintenance: recorded, no incident", name, service)
            return None
        if firing:
            obs = Observation(
                host=host,
                probe="alertmanager",
                status=Status.FAIL,
                summary=f"alert {name}: {summary}" if summary else f"alert {name}",
                fault=fault,
                details={"alertname": name, "fingerprint": fingerprint},
                at=starts_at,
            )
            item = self._join_or_open(service, obs, starts_at, key, source="alertmanager")
            item.update(key, heard=self.clock())
            if ends_at is not None and ends_at > starts_at:
                item.update(key, ends_at=ends_at)
            self._flush_alert(item)
            return item.incident.id
        for item in self._open.values():
            if key in item.signals:
                self._recover_signal(item, key, ends_at or self.clock(), f"alert {name} resolved")
                incident_id = item.incident.id
                self._flush_alert(item)
                return incident_id
        return None

    def _flush_alert(self, item: _Open) -> None:
        """Write what an alert changed; inside a batch (group commit), once at its end
        (apply_alerts) unless the incident is new (its answer needs the id) or no longer
        open (flush lets it go, so the next alert opens a new one, as without a batch)."""
        if self.store.in_batch and item.incident.id and item.incident.status == IncidentStatus.OPEN:
            return
        self.flush()

    def tick(self) -> None:
        """Periodic work: end signals that can no longer end by themselves, end planned
        incidents whose window is over while the harm goes on, and retry writes that
        failed (disk full, read-only store)."""
        self.reload_open()
        self._end_orphans()
        self._windows_over()
        self._settled_causes()
        self.flush()

    def _end_orphans(self) -> None:
        """Every open incident must be able to end. A signal whose check left the config
        (host or probe removed) never reports again, and an alert whose resolution was
        lost never arrives: end those, saying why, so the incident resolves and a later
        outage opens its own."""
        now = self.clock()
        for item in list(self._open.values()):
            for key, sig in list(item.signals.items()):
                if not sig.firing:
                    continue
                why = self._orphaned(sig, now)
                if why:
                    self._recover_signal(item, key, now, why)

    def _orphaned(self, sig: SignalRecord, now: datetime) -> str:
        host, probe = sig.host, sig.probe
        if probe == "alertmanager":
            ends = sig.ends_at
            if ends is not None and now > ends + ALERT_LEASE_GRACE:
                return "the alert's end time passed without a renewal (assumed ended)"
            heard = sig.heard or sig.since
            if ends is None and heard is not None and now - heard > ALERT_SILENCE:
                return (
                    f"no word from Alertmanager on this alert for {duration_words(now - heard)}"
                    " (its resolution was lost; assumed ended)"
                )
            return ""
        if host not in self.config.hosts:
            return f"{host} was removed from the configuration; no longer watched"
        if probe not in {name for _, name, _ in self.config.checks_for(host)}:
            return f"the {probe} check of {host} was removed from the configuration"
        return ""

    def _window(self, service: str, hosts: list[str], at: datetime) -> Window | None:
        """The window covering this harm. A store that cannot be read now hides only the
        one-off windows: the config's recurring ones still apply (`_windows_error` says
        the answer is partial)."""
        try:
            found = covering(self.config, self.store, service, hosts, at)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if str(exc) != self._windows_error:  # once per change, not once per look
                log.warning(
                    "cannot read one-off maintenance windows (recurring ones still apply): %s",
                    exc,
                )
            self._windows_error = str(exc)
            return covering(self.config, None, service, hosts, at)
        self._windows_error = None
        return found

    def _windows_over(self) -> None:
        now = self.clock()
        for item in self._open.values():
            incident = item.incident
            if not incident.planned or incident.status != IncidentStatus.OPEN:
                continue
            if self._window(incident.service, incident.hosts, now) is not None:
                continue
            if self._windows_error is not None:
                continue  # its one-off window may still be on: page nobody on a guess
            # The harm outlasted the window: from now on a normal incident. started_at
            # stays the first harm; the notifications start now.
            incident.planned = False
            item.add(
                now,
                EntryKind.MAINTENANCE,
                "Maintenance window over with the harm still going on: a normal incident"
                " from now on, notifications start",
                "recorder",
                "maintenance:over",
            )
            self._notify(
                item, "opened", "opened", f"Still failing after maintenance: {incident.title}"
            )
            log.warning("%s outlasted its maintenance window", incident.ref)

    # ---- opening and joining ----------------------------------------------------------

    def _on_firing(self, sig: Signal) -> None:
        service = self.config.service_of(sig.host)
        item = self._join_or_open(service, sig.observation, sig.since, sig.key, source=sig.probe)
        if sig.kind is SignalKind.FLAPPED:
            n = (item.signals[sig.key].flaps or 0) + 1
            item.update(sig.key, flaps=n)
            item.add(
                sig.observation.at,
                EntryKind.NOTE,
                f"{sig.probe} on {sig.host} failed again within recover_after (flap {n}): "
                f"{sig.observation.summary}",
                sig.probe,
                f"flap:{sig.key}:{n}",
                Step.FAILED_AGAIN,
            )

    def _join_or_open(
        self, service: str, obs: Observation, since: datetime, key: str, source: str
    ) -> _Open:
        item = self._open.get(service)
        now = self.clock()
        started = self._harm_start(service, obs, since)
        if item is None:
            item = self._open_new(service, obs, started, now, source)
        elif key not in item.signals:
            self._harm_after_risk(item, obs, started, source)
            item.add(
                obs.at,
                EntryKind.NOTE,
                f"Also failing: {obs.probe} on {obs.host}: {obs.summary}",
                source,
                f"join:{key}:{iso(since)}",
                Step.ALSO_FAILING,
            )
        if started < item.incident.started_at:
            item.incident.started_at = started
        was = item.signals.get(key)
        new = SignalRecord(
            host=obs.host,
            probe=obs.probe,
            fault=str(obs.fault) if obs.fault else None,
            state=SignalState.FIRING,
            since=(was.since if was else None) or since,
            summary=obs.summary,
            flaps=(was.flaps if was else None) or 0,
            subjects=obs.facts.subjects,
        )
        item.put(key, new)
        if obs.host not in item.incident.hosts:
            item.incident.hosts.append(obs.host)
        if item.incident.status != IncidentStatus.OPEN:
            item.incident.status, item.incident.resolved_at = IncidentStatus.OPEN, None
            self._notify(
                item, "reopened", f"reopened:{iso(since)}", f"Failing again: {obs.summary}"
            )
        self._refresh(item)
        return item

    def _open_new(
        self, service: str, obs: Observation, started: datetime, now: datetime, source: str
    ) -> _Open:
        how = (
            f"an Alertmanager alert ({shown(obs, 'alertname')})"
            if source == "alertmanager"
            else f"automated monitoring: {obs.probe} probe on {obs.host}"
        )
        incident = Incident(
            id=0,
            status=IncidentStatus.OPEN,
            title=f"{service}: {obs.summary}",
            service=service,
            fault=str(obs.fault) if obs.fault else None,
            started_at=started,
            detected_at=now,
            hosts=[obs.host],
        )
        # The fault it was opened with: recorder_incidents_opened_total counts by it, so a
        # later re-ranking never moves the count between faults (a false counter reset).
        incident.opened_fault = incident.fault
        item = _Open(incident=incident)
        self._open[service] = item
        zone = self.config.zone
        risk = obs.fault in RISK_ONLY
        began = "risk began" if risk else "harm began"
        if risk:
            # Nothing failed for users: say what is at stake, and measure no harm yet.
            incident.opened_on_risk = True
            incident.affected = Affected(0.0, NO_HARM_METHOD, NO_HARM_EVIDENCE)
            item.add(
                started,
                EntryKind.NOTE,
                f"Risk began: {obs.summary} ({RISK_WORDS})",
                source,
                "risk-start",
            )
        else:
            item.add(
                started,
                EntryKind.IMPACT_START,
                f"Harm began: {obs.summary}",
                source,
                "impact-start",
            )
        item.add(
            now,
            EntryKind.DETECTION,
            f"Incident opened by the recorder, detected by {how}: {obs.summary} "
            f"({began} {local_time(started, zone)})",
            source,
            "detection",
        )
        for deploy in self._deploys(service, started - DEPLOY_LOOKBACK, now):
            item.pending.append(
                deploy_entry(
                    service, deploy["version"], deploy["at"], deploy["source"], deploy["id"]
                )
            )
        # Look at every probe of the service's hosts at once: what passes is ruled out.
        hosts = self.config.hosts_of(service)
        item.diagnostics = {(h, p) for h in hosts for _, p, _ in self.config.checks_for(h)}
        if self.request_diagnostics and item.diagnostics:
            self.request_diagnostics(hosts)
        window = self._window(service, [obs.host], started)
        if window is not None:
            # Planned work: recorded like any incident, announced to nobody while the
            # window lasts (see tick()).
            incident.planned = True
            item.add(
                now,
                EntryKind.MAINTENANCE,
                f"Harm began inside maintenance window {_window_ref(window)} "
                f"({window.reason}; until {local_time(window.ends_at, zone)}): planned, "
                "no notification",
                "recorder",
                "maintenance:planned",
            )
        # Not "opened" yet: that is said once the store holds it (flush, committed).
        log.warning("opening an incident for %s: %s", service, obs.summary)
        said = (
            f"Risk began: {obs.summary}; {NO_HARM_EVIDENCE}"
            if risk
            else f"Harm began: {obs.summary}"
        )
        self._notify(item, "opened", "opened", said)
        return item

    def _harm_after_risk(self, item: _Open, obs: Observation, at: datetime, source: str) -> None:
        """A signal joining an incident opened on a risk: when it is harm users meet (nginx
        restarted on the broken configuration and down, errors in the log), the harm
        begins at its first failed sample. Only the first such signal starts it."""
        incident = item.incident
        if not incident.opened_on_risk or incident.harm_began is not None:
            return
        if obs.fault is None or obs.fault in RISK_ONLY:
            return
        incident.harm_began = at
        item.add(at, EntryKind.IMPACT_START, f"Harm began: {obs.summary}", source, "impact-start")

    def _on_unreachable(self, sig: Signal) -> None:
        key = f"monitoring:{sig.host}"
        item = self._open.get(key)
        obs = sig.observation
        if item is None:
            incident = Incident(
                id=0,
                status=IncidentStatus.OPEN,
                severity=Severity.MONITORING,
                title=f"cannot reach {sig.host}: {obs.facts.reason or obs.summary}",
                service=self.config.service_of(sig.host),
                fault=None,
                started_at=sig.since,
                detected_at=self.clock(),
                hosts=[sig.host],
            )
            item = _Open(incident=incident)
            self._open[key] = item
            item.add(
                sig.since,
                EntryKind.DETECTION,
                f"The recorder cannot check {sig.host} ({sig.probe}): {obs.summary}. "
                "This is a monitoring gap, not evidence that the site is down.",
                sig.probe,
                "detection",
            )
            log.warning("cannot reach %s: %s", sig.host, obs.summary)
        # A gap in monitoring cannot flap and names nothing: no flaps, no subjects.
        item.put(
            sig.key,
            SignalRecord(sig.host, sig.probe, None, SignalState.FIRING, sig.since, obs.summary),
        )

    # ---- recovery -----------------------------------------------------------------------

    def _on_recovered(
        self, host: str, probe: str, since: datetime, summary: str, monitoring: bool = False
    ) -> None:
        key = f"{probe}@{host}"
        for item in list(self._open.values()):
            monitors = item.incident.severity is Severity.MONITORING
            if monitors == monitoring and key in item.signals:
                self._recover_signal(item, key, since, summary)

    def _harm_start(self, service: str, obs: Observation, since: datetime) -> datetime:
        """Harm began at the first failed sample, or earlier when the log says so: at the
        first 5xx in it, or for slow responses when the first slow response the entry
        points logged began (error_rate's `first_slow`; that probe passes while its share
        of 5xx is fine, so its latest observation is read, not a signal of its own)."""
        moments = [obs.facts.first_5xx]
        if obs.fault is Fault.SLOW_RESPONSES:
            floor = self._slow_floor(service, since)
            slow = [obs.facts.first_slow, *self._first_slow(service)]
            moments += [max(m, floor) for m in slow if m is not None]
        return min([since, *(m for m in moments if m is not None)])

    def _slow_floor(self, service: str, opened: datetime) -> datetime:
        """How far back a slow response may move the start of harm first seen failing at
        `opened`: one error_rate window (the slowdown the window saw before it failed),
        never before the service's previous incident resolved. A websocket or a long
        download is logged with its whole duration; unbounded, one such line, an outlier
        before the slowdown or the slow lines of an incident resolved seconds ago would
        become the start."""
        # The window of the probes that read the entry points' logs (by the setting, not
        # the probe's name: any probe with a window of the log is read the same way).
        windows = [
            float(window)
            for host in self._entrypoints(service)
            for _, _, cfg in self.config.checks_for(host)
            if isinstance(window := getattr(cfg, "window", None), int | float)
        ]
        floor = opened - timedelta(seconds=max(windows, default=60.0))
        previous = self._resolved.get(service)
        return max(floor, previous) if previous is not None else floor

    def _first_slow(self, service: str) -> list[datetime]:
        """When the first slow response began, by the latest observation of each check
        of the service's entry points that says it."""
        hosts = set(self._entrypoints(service))
        return [
            obs.facts.first_slow
            for (host, _), obs in self.latest.items()
            if host in hosts and obs.facts.first_slow is not None
        ]

    def _slow_began_earlier(self, item: _Open, obs: Observation) -> None:
        """An entry point's log shows a slow response that began before the open
        slow-responses incident's start (nginx logs it only once it is finished, after
        the sample that opened the incident): the harm, and the clients counted over
        it, start there."""
        incident = item.incident
        first_slow = obs.facts.first_slow
        if (
            first_slow is not None
            and first_slow < incident.started_at
            and incident.status == IncidentStatus.OPEN
            and _slow_harm(item)
            and not incident.opened_on_risk
            and obs.host in self._entrypoints(incident.service)
        ):
            sinces = [s.since for s in item.signals.values() if s.since is not None]
            opened = min(sinces, default=incident.started_at)
            began = max(first_slow, self._slow_floor(incident.service, opened))
            why = (
                f"{obs.host}'s access log shows a slow response that began then"
                " (its log time minus its request time)"
            )
            self._start_earlier(item, began, why, obs.probe)

    def _start_earlier(self, item: _Open, began: datetime, why: str, source: str) -> None:
        """Move the open incident's harm start back to `began`, and say so on the timeline: the
        entries written at opening ("Harm began", the detection's "harm began HH:MM:SS")
        are stored once and keep the first time, so the draft would contradict its own
        summary without this note."""
        incident = item.incident
        was = incident.started_at
        if began >= was:
            return
        incident.started_at = began
        zone = self.config.zone
        item.add(
            began,
            EntryKind.NOTE,
            f"Harm began earlier than first recorded, at {local_time(began, zone)}"
            f" (not {local_time(was, zone)}): {why}",
            source,
            f"start-moved:{iso(began)}",
        )

    def _recover_signal(self, item: _Open, key: str, since: datetime, summary: str) -> None:
        sig = item.signals[key]
        if not sig.firing:
            return
        item.put(key, sig.recovered(since))
        item.add(
            since,
            EntryKind.NOTE,
            f"{sig.probe} on {sig.host} healthy again: {summary}",
            sig.probe,
            f"recovered:{key}:{iso(since)}",
            Step.RECOVERED,
        )
        if not any(s.firing for s in item.signals.values()):
            ends = [s.recovered_at for s in item.signals.values()]
            resolved_at = max(e for e in ends if e is not None)
            item.incident.status = IncidentStatus.RESOLVED
            item.incident.resolved_at = resolved_at
            self._resolved[item.incident.service] = resolved_at
            if item.affected_merged and item.incident.affected.method not in ENTRYPOINT_METHODS:
                # The seconds held back since the resolution are left out: the share is
                # over the incident's start to its resolution.
                view = self._clients_view(item, resolved_at)
                if view is not None and view.seen.count():
                    final = self._merged_affected(
                        item.incident.service,
                        view,
                        _slow_harm(item),
                    )
                    peak = item.incident.affected.peak or 0.0
                    item.incident.affected = _with_peak(final, peak)
            harm_began = item.incident.harm_began
            if harm_began is None:
                # Opened on a risk that never became harm: say how long it lasted.
                lasted = duration_words(resolved_at - item.incident.started_at)
                span = f"{lasted} of risk, no user harm measured"
            else:
                span = f"{duration_words(resolved_at - harm_began)} of harm"
            item.add(
                resolved_at,
                EntryKind.RESOLUTION,
                f"Every signal healthy again; incident resolved after {span}",
                "recorder",
                f"resolved:{iso(resolved_at)}",
            )
            self._notify(
                item,
                "resolved",
                f"resolved:{iso(resolved_at)}",
                f"Every signal healthy again after {span}",
            )
            log.warning("resolved %s: %s", item.incident.ref, item.incident.title)

    # ---- evidence, ranking, affected share ------------------------------------------------

    def evidence(self, service: str, since: datetime | None = None) -> dict[str, list[str]]:
        """Ranking evidence: runbook symptom terms present now on the service's hosts."""
        terms: dict[str, list[str]] = {}
        health: dict[str, list[bool]] = {}
        by_host = self._latest_by_host()
        for host in self.config.hosts_of(service):
            for probe, obs in by_host.get(host, ()):
                if obs.status is Status.ERROR:
                    continue
                health.setdefault(probe, []).append(obs.status is Status.OK)
                if obs.status is Status.FAIL and obs.fault:
                    terms.setdefault(f"{probe}:{obs.fault}", []).append(_on_host(host, obs.summary))
                # Terms the probe decided itself (error_rate's rate:above-baseline).
                for term, said in obs.facts.terms.items():
                    terms.setdefault(term, []).append(f"{host}: {said}")
        item = self._open.get(service)
        if item:
            # What failed earlier in this incident still counts: a signal that recovered
            # first (the symlink restored) must not hand the top rank to whatever
            # recovers last (the port, a second later).
            seen = item.incident.seen_terms
            for term, lines in terms.items():
                seen[term] = lines[:5]
            for term, lines in seen.items():
                terms.setdefault(term, list(lines))
        failed_probes = {t.split(":", 1)[0] for t in terms}
        for probe, oks in health.items():
            if oks and all(oks) and probe not in failed_probes:
                terms[f"{probe}:ok"] = [f"{probe} ok on every host of {service}"]
        if item:
            for term, firing in item.alerting.items():
                if not firing:
                    continue
                # A few alerts say what the term rests on; all of them would make the
                # stored ranking grow with every alert that joins.
                lines = terms.setdefault(term, [])
                lines += islice(firing.values(), ALERT_EVIDENCE_LINES)
                n = len(firing) - ALERT_EVIDENCE_LINES
                if n > 0:
                    lines.append(f"and {n:,} more firing alert{'s' if n > 1 else ''}")
        start = since or (item.incident.started_at if item else self.clock())
        for deploy in self._suspect_deploys(service, start):
            terms.setdefault("deploy:recent", []).append(
                f"deploy of {service} {deploy['version']} at "
                f"{local_time(deploy['at'], self.config.zone)}"
            )
        return terms

    def _suspect_deploys(self, service: str, start: datetime) -> list[dict[str, Any]]:
        """The deploys that may have caused harm starting at `start`: made before it (within
        DEPLOY_LOOKBACK), with no recovery of the service in between. A deploy made during
        the harm is a response to it, and one the service already recovered after (an
        earlier incident resolved since) did not cause this later harm."""
        suspects = []
        for deploy in self._deploys(service, start - DEPLOY_LOOKBACK, start + DEPLOY_SLACK):
            try:
                recovered = self.store.resolved_between(service, deploy["at"], start)
            except (sqlite3.Error, OSError, StoreError):
                recovered = 0  # cannot tell: keep it a suspect, as before
            if not recovered:
                suspects.append(deploy)
        return suspects

    def _refresh(self, item: _Open) -> None:
        incident = item.incident
        if incident.severity is not Severity.OUTAGE or incident.status is not IncidentStatus.OPEN:
            return
        try:
            candidates = rank_causes(self.evidence(incident.service))
        except sqlite3.Error as exc:
            self._store_failed(exc)
            return
        incident.root_causes = [
            Cause(str(c.fault), c.confidence, list(c.evidence)) for c in candidates
        ]
        if candidates:
            top = candidates[0]
            incident.fault = str(top.fault)
            runbook = load_runbooks().get(top.fault)
            label = runbook.title if runbook else str(top.fault)
            incident.title = f"{incident.service}: {label} ({', '.join(incident.hosts)})"
        self._cause_notice(item)
        line = _causes_line(incident.root_causes)
        if line and line != item.causes_said:
            item.causes_said = line
            item.add(
                self.clock(),
                EntryKind.NOTE,
                f"Root-cause candidates: {line}",
                "recorder",
                f"causes:{line}",
            )
        self._update_affected(item)

    def _cause_notice(self, item: _Open) -> None:
        """Track the top root cause; `_settled_causes()` announces a change that held.
        The ranking of the first seconds, before every probe of the service reported (the
        diagnostics), is the baseline, not a change to page about."""
        incident, top = item.incident, item.incident.fault
        if not incident.root_causes:
            return
        if incident.notified_fault is None or item.diagnostics:
            incident.notified_fault = top
        if top != incident.top_fault:
            incident.rank_top(top, self.clock())

    def _settled_causes(self) -> None:
        """`cause-changed` once a new top root cause has held for CAUSE_SETTLE and every
        probe of the service reported: the ranking moves within a sweep as each probe
        lands, and nobody should be paged for each step of that."""
        now = self.clock()
        settle = timedelta(seconds=max(CAUSE_SETTLE, 2 * self.config.defaults.interval))
        for item in self._open.values():
            incident = item.incident
            top, since = incident.top_fault, incident.top_since
            if incident.status != IncidentStatus.OPEN or item.diagnostics:
                continue
            if top is None or since is None or top == incident.notified_fault:
                continue
            if now - since < settle:
                continue
            previous, incident.notified_fault = incident.notified_fault, top
            n = incident.cause_changes = incident.cause_changes + 1
            self._notify(
                item,
                "cause-changed",
                f"cause-changed:{n}",
                f"Top root cause now {top} (was {previous})",
            )

    def _step_notice(self, item: _Open) -> None:
        """`affected-step` when the affected share rises across a configured step; the
        share first measured is the baseline."""
        incident, ratio = item.incident, item.incident.affected.ratio
        if ratio is None:
            return
        step = max((s for s in self.config.notify.affected_steps if ratio >= s), default=0.0)
        told = incident.notified_step
        if told is None:
            incident.notified_step = step
        elif step > told:
            incident.notified_step = step
            self._notify(
                item,
                "affected-step",
                f"affected-step:{step:g}",
                f"Affected share rose past {step:.0%}: {item.incident.affected.evidence}",
            )

    def _notify(self, item: _Open, event: str, key: str, text: str) -> None:
        """Queue `event` for the receivers routed it; written with the incident change."""
        incident = item.incident
        if incident.severity is not Severity.OUTAGE:
            return  # a monitoring gap is for the recorder's operators, not the service's
        if incident.planned:
            return  # inside a maintenance window: nobody is paged for planned work
        receivers = self.config.notify.receivers_for(incident.service, event)
        if receivers:
            item.notices.append(Notice(event, key, self.clock(), receivers, text))

    # ---- distinct clients over the incident -------------------------------------------------

    def _entrypoints(self, service: str) -> list[str]:
        return (
            self.config.entrypoints_of(service)
            or [h for h in self.config.hosts_of(service) if self.config.hosts[h].role == "lb"]
            or self.config.hosts_of(service)
        )

    def _note_clients(self, host: str, seconds: tuple[ClientSecond, ...]) -> None:
        """Keep an entry point's recent clients by second, and bring the open incidents
        of its service up to date with them. Only entry points count (what users hit)."""
        services = {*self.config.services, self.config.service_of(host)}
        if not any(host in self._entrypoints(name) for name in services):
            self._recent.pop(host, None)
            return
        recent = self._recent.setdefault(host, {})
        for sec in seconds:
            had = recent.get(sec.second)
            if had is None:
                slow = sec.slow.copy() if sec.slow is not None else None
                recent[sec.second] = ClientSecond(
                    sec.second, sec.seen.copy(), sec.hurt.copy(), slow
                )
            else:
                had.seen.merge(sec.seen)
                had.hurt.merge(sec.hurt)
                if had.slow is not None and sec.slow is not None:
                    had.slow.merge(sec.slow)
                elif sec.slow is not None:
                    recent[sec.second] = replace(had, slow=sec.slow.copy())
        oldest = max(recent) - RECENT_SECONDS
        for second in [s for s in recent if s < oldest]:
            del recent[second]
        for item in self._open.values():
            incident = item.incident
            if (
                incident.severity == "outage"
                and incident.status == IncidentStatus.OPEN
                and host in self._entrypoints(incident.service)
            ):
                self._advance_clients(item, seconds)

    def _hold(self, service: str) -> int:
        """How long a second of the log waits before it is merged for good: longer than
        any recover_after of the service's checks, so that when the incident resolves
        (at the first healthy sample of its last signal, confirmed recover_after later)
        the seconds after its resolution can still be left out."""
        longest = max(
            (
                self.config.recover_after(check)
                for host in self.config.hosts_of(service)
                for check, _, _ in self.config.checks_for(host)
            ),
            default=0.0,
        )
        return min(RECENT_SECONDS // 2, int(longest) + 2)

    def _advance_clients(self, item: _Open, fresh: tuple[ClientSecond, ...] = ()) -> None:
        """Merge the entry points' clients from the incident's start: the seconds older
        than the hold into `clients` (stored with the incident), the newer ones only into
        the figure shown (`clients_view`). Union cannot be undone, so holding the newest
        seconds back is what lets the figure stop at the resolution. Merging a second
        twice (a restarted probe re-reads its window) changes nothing."""
        incident = item.incident
        counted_from = _counted_from(incident)
        if counted_from is None:
            return  # a risk that has hurt no one yet: no client to count
        start = _epoch_second(counted_from)
        hosts = self._entrypoints(incident.service)
        rings = [self._recent[h] for h in hosts if self._recent.get(h)]
        if item.clients is None and not any(s >= start for r in rings for s in r):
            return
        merged = item.clients if item.clients is not None else ClientMerge()
        changed = item.clients is None
        below = merged.last if merged.last is not None else start - 1
        if item.clients_from != counted_from:
            # Opened (harm began before detection), or a joining signal moved the start
            # earlier: the recent seconds from the start up to what is merged already.
            item.clients_from = counted_from
            for ring in rings:
                for second, sec in ring.items():
                    if start <= second <= below:
                        changed = merged.add(sec) or changed
        for sec in fresh:  # late lines of seconds merged already
            if start <= sec.second <= below:
                changed = merged.add(sec) or changed
        newest = max((max(r) for r in rings), default=start - 1)
        commit_to = newest - self._hold(incident.service)
        for ring in rings:
            for second in sorted(s for s in ring if below < s <= commit_to and s >= start):
                changed = merged.add(ring[second]) or changed
        item.clients = merged
        if changed:
            incident.affected_clients = merged.to_json()
        item.clients_view = self._clients_view(item, None)

    def _clients_view(self, item: _Open, until: datetime | None) -> ClientMerge | None:
        """The merged clients and the held seconds after them, up to `until` (the
        resolution) when given."""
        counted_from = _counted_from(item.incident)
        if item.clients is None or counted_from is None:
            return None
        view = item.clients.copy()
        start = _epoch_second(counted_from)
        below = view.last if view.last is not None else start - 1
        end = _epoch_second(until) if until is not None else None
        for host in self._entrypoints(item.incident.service):
            for second, sec in self._recent.get(host, {}).items():
                if second > below and second >= start and (end is None or second <= end):
                    view.add(sec)
        return view

    def _update_affected(self, item: _Open) -> None:
        incident = item.incident
        if not any(s.firing for s in item.signals.values()):
            return  # harm over: the measure is frozen at what the incident saw
        if incident.opened_on_risk and incident.harm_began is None:
            # Users are still served: 0% (no-harm-measured) until a check measures harm.
            # A 5xx in the log now is background, not this incident's harm.
            return
        if incident.severity == "outage" and item.clients_from != _counted_from(incident):
            self._advance_clients(item)  # just opened, or a joining signal moved the start
        measured, window = self._measure(incident.service, item)
        if measured is None:
            return
        previous = incident.affected
        peak = max(window if window is not None else measured.ratio or 0.0, previous.peak or 0.0)
        if previous.method in ENTRYPOINT_METHODS and previous.ratio == 1.0:
            # Clients turned away at the door never reach a log: everyone who came while
            # the entry point refused them was hurt, and the log cannot say less.
            previous.peak = peak
        elif window is not None:
            # Distinct clients over the incident so far: replaces what was said before (it
            # may fall as more clients come and are served), with the worst window beside.
            incident.affected = _with_peak(measured, peak)
            item.affected_merged = True
        elif previous.ratio is None or (measured.ratio or 0.0) >= (previous.ratio or 0.0):
            # A measure of the moment (a window, a dead backend's weight, a closed door):
            # the worst seen while the incident was open, with its evidence.
            incident.affected = Affected(measured.ratio, measured.method, measured.evidence, peak)
            item.affected_merged = False
        else:
            previous.peak = peak
        self._step_notice(item)

    def affected_share(self, service: str) -> Affected | None:
        """The best measure available now of the share of the service's users hurt: for
        a service with an open incident, over that incident so far."""
        item = self._open.get(service)
        return self._measure(service, item)[0]

    def _measure(self, service: str, item: _Open | None) -> tuple[Affected | None, float | None]:
        """The share of users hurt, and when it counts distinct clients over the whole
        incident, the share of the current log window (the second figure); else None."""
        entrypoints = self._entrypoints(service)
        zone = self.config.zone
        by_host = self._latest_by_host()
        seen = {host: [obs for _, obs in by_host.get(host, ())] for host in entrypoints}
        for host in entrypoints:
            failing = [o for o in seen[host] if o.status is Status.FAIL and o.fault]
            shut = [o for o in failing if o.fault in _NO_ANSWER]
            if shut:
                # What the client meets (the closed port) before why (nginx is down).
                shut.sort(key=lambda o: o.fault is not Fault.PORT_CLOSED)
                return Affected(
                    1.0,
                    "entrypoint-unreachable",
                    f"{host} is the only way in for {service} and answers nothing"
                    f" ({shut[0].summary}): every client was turned away",
                ), None
            wrong = [o for o in failing if o.fault is Fault.UNEXPECTED_STATUS]
            if wrong:
                # The entry point answers, but not with the site (a default server's 404
                # once the site's link is gone): the checked page fails for everyone.
                return Affected(
                    1.0,
                    "entrypoint-unexpected-status",
                    f"{host} is the only way in for {service} and does not serve the site"
                    f" ({wrong[0].summary}): every client got that answer instead",
                ), None
        best: Affected | None = None
        window: float | None = None
        # Slow answers hurt users without a 5xx: count the clients that waited too long
        # (or those that got a 5xx when they are more).
        slow = item is not None and _slow_harm(item)
        for host in entrypoints:
            # The clients the host's log shows (error_rate's facts), when it could look.
            harm = next(
                (
                    o.facts.clients
                    for o in seen[host]
                    if o.facts.clients is not None and o.status is not Status.ERROR
                ),
                None,
            )
            if harm is None or not harm.clients:
                continue
            span = ""
            if harm.window_start and harm.window_end:
                span = (
                    f", {local_time(harm.window_start, zone)} to"
                    f" {local_time(harm.window_end, zone)}"
                )
            slow_known = harm.slow is not None and harm.slow_above is not None
            if slow and not slow_known and not harm.hurt:
                best = Affected(None, SLOW_METHOD, no_request_time([host]))
            elif slow and slow_known and (harm.slow or 0) >= harm.hurt:
                assert harm.slow is not None and harm.slow_above is not None
                best = Affected(
                    round(harm.slow / harm.clients, 4),
                    SLOW_METHOD,
                    f"{harm.slow:,} of {harm.clients:,} clients got at least one response"
                    f" slower than {harm.slow_above:g}s{span}, {host} access log",
                )
            else:
                best = Affected(
                    round(harm.hurt / harm.clients, 4),
                    "clients-with-5xx",
                    f"{harm.hurt:,} of {harm.clients:,} clients got at least one 5xx"
                    f"{span}, {host} access log",
                )
        merged = item.clients_view if item is not None else None
        if merged is not None and merged.seen.count():
            window = best.ratio if best is not None and best.ratio is not None else 0.0
            best = self._merged_affected(service, merged, slow)
        for host in entrypoints:
            # The weight of the dead backends behind the host (upstreams' facts).
            up = next(
                (
                    o
                    for o in seen[host]
                    if o.status is Status.FAIL and o.facts.dead_weight is not None
                ),
                None,
            )
            if up is not None and up.facts.dead_weight is not None:
                share = up.facts.dead_weight
                if best is not None and (best.ratio or 0.0) <= share:
                    continue  # the balancer's log shows less harm than the dead backend's weight
                best, window = (
                    Affected(
                        round(share, 4),
                        "dead-backend-weight",
                        f"dead backends carried {share:.0%} of {host}'s upstream weight"
                        f" ({up.summary})",
                    ),
                    None,
                )
        return best, window

    def _latest_by_host(self) -> dict[str, list[tuple[str, Observation]]]:
        """The latest observation of every check, by host, as (probe, observation): read
        once per question. Scanning them once per host of the service (the evidence) or
        per entry point (the affected share) made every observation cost hosts x checks,
        and an outage on 200 hosts of one service about 0.4-0.8 s of engine CPU per
        second of probing."""
        by_host: dict[str, list[tuple[str, Observation]]] = {}
        for (host, probe), obs in self.latest.items():
            by_host.setdefault(host, []).append((probe, obs))
        return by_host

    def _merged_affected(self, service: str, merged: ClientMerge, slow: bool = False) -> Affected:
        """The share of distinct clients hurt over the incident, from merged sketches:
        those that got a 5xx, or with `slow` those that got a slow response."""
        zone = self.config.zone
        entrypoints = self._entrypoints(service)
        if slow and merged.slow is None and not merged.hurt.count():
            return Affected(None, SLOW_METHOD, no_request_time(entrypoints))
        if slow and (merged.slow is None or merged.hurt.count() > merged.slow.count()):
            slow = False  # more clients got a 5xx than a slow response: the larger harm
        hurt_by = merged.slow if slow and merged.slow is not None else merged.hurt
        seen, hurt = merged.seen.count(), min(hurt_by.count(), merged.seen.count())
        when = ""
        if merged.first is not None and merged.last is not None:
            when = (
                f" from {local_time(_from_epoch(merged.first), zone)} to"
                f" {local_time(_from_epoch(merged.last), zone)}"
            )
        about = (
            ""
            if merged.seen.exact and hurt_by.exact
            else f" (estimated: HyperLogLog, about ±{HLL_ERROR:.1%} each)"
        )
        by_host = self._latest_by_host()
        above = next(
            (
                o.facts.clients.slow_above
                for host in entrypoints
                for _, o in by_host.get(host, [])
                if o.facts.clients is not None and o.facts.clients.slow_above is not None
            ),
            None,
        )
        got = (
            "5xx" if not slow else f"response slower than {above:g}s" if above else "slow response"
        )
        return Affected(
            round(hurt / seen, 4) if seen else 0.0,
            SLOW_METHOD if slow else "clients-with-5xx",
            f"{hurt:,} of {seen:,} distinct clients got at least one {got}{when}{about},"
            " counted over the incident (every second of the log since it started),"
            f" {', '.join(entrypoints)} access log",
        )

    # ---- diagnostics ---------------------------------------------------------------------

    def _record_diagnostic(self, item: _Open, obs: Observation) -> None:
        if obs.status is Status.OK:
            text = f"Checked {obs.probe} on {obs.host}: {obs.summary} (ruled out)"
            item.incident.rule_out(RuledOut(obs.host, obs.probe, obs.summary))
        elif obs.status is Status.FAIL:
            text = f"Checked {obs.probe} on {obs.host}: {obs.summary}"
        else:
            text = f"Could not check {obs.probe} on {obs.host}: {obs.summary}"
        item.add(obs.at, EntryKind.ACTION, text, obs.probe, diagnostic_key(obs.host, obs.probe))

    # ---- persistence -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write what changed; on failure keep it in memory and try again later.

        An incident whose stored fields and timeline are as last written is not written
        again: a tick with nothing new costs no transaction (it cost one fsynced write per
        open incident per second)."""
        taken = False
        for key, item in list(self._open.items()):
            snapshot = _stored_fields(item.incident)
            if (
                item.incident.id
                and not item.pending
                and not item.notices
                and not item.dirty
                and snapshot == item.written
            ):
                continue
            try:
                if item.incident.id == 0:
                    item.incident.timeline = item.pending
                    self.store.create_incident(item.incident, item.notices)
                    item.incident.timeline = []
                    if self.store.in_batch:
                        self._uncommitted.append(item.incident)
                    else:
                        self._say_opened(item.incident)
                elif not self.store.save_detection(
                    item.incident, item.pending, item.notices, signals=item.dirty
                ):
                    del self._open[key]  # people closed it: no longer ours to write
                    continue
            except IncidentTaken:
                # Another recorder (a leader we did not know of) opened it first: drop ours
                # unwritten and continue the stored one below.
                log.warning("%s is open in the store already; continuing that one", key)
                del self._open[key]
                taken = True
                continue
            except (sqlite3.Error, OSError, StoreError) as exc:
                if self.store.in_batch:
                    raise  # the batch rolls back, memory with it (apply_alert_batches)
                self._store_failed(exc)
                return
            item.pending, item.notices = [], []
            item.dirty = set()
            item.written = snapshot
            if item.incident.status != IncidentStatus.OPEN:
                del self._open[key]
        if taken:
            try:
                self.restore()  # the detector already knows these signals fire
            except (sqlite3.Error, OSError, StoreError) as exc:
                self._store_failed(exc)
                return
        if self.store_error:
            log.warning("store writable again; pending changes written")
            self.store_error = None

    def _deploys(self, service: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Deploy events, or none while the store cannot be read (evidence, not a reason
        to stop recording the incident)."""
        try:
            found = self.store.deploys(service, since, until)
        except (sqlite3.Error, OSError, StoreError) as exc:
            if str(exc) != self._deploys_error:  # once per change, not once per refresh
                log.warning("cannot read deploy events: %s", exc)
            self._deploys_error = str(exc)
            return []
        self._deploys_error = None
        return found

    def _store_failed(self, exc: BaseException) -> None:
        reason = f"store write failed: {exc}"
        if reason != self.store_error:
            log.error("%s (changes kept in memory, retrying)", reason)
        self.store_error = reason

    @staticmethod
    def _book_key(service: str, severity: Severity, hosts: Iterable[str]) -> str:
        return book_key(service, severity, hosts)


def _stored_fields(incident: Incident) -> tuple[Any, ...]:
    """What `Store.save_detection` writes of an incident, as values that compare equal
    exactly when the write would change nothing."""
    return (
        incident.status,
        incident.title,
        incident.fault,
        tuple(incident.hosts),
        incident.started_at,
        incident.resolved_at,
        json.dumps(asdict(incident.affected), sort_keys=True, default=str),
        json.dumps([asdict(c) for c in incident.root_causes], default=str),
        # The signals are rows of their own, written by `_Open.dirty`: comparing them
        # here would cost work in proportion to the incident's size on every flush.
        json.dumps(data_row(incident.data), sort_keys=True, default=str),
    )


def _slow_harm(item: _Open) -> bool:
    """Whether users met slow responses, by the symptom, not the ranked cause: ranking
    may name capacity or a dead upstream for slowness, and the share of clients that
    got a 5xx then reads 0% while users waited."""
    incident = item.incident
    return incident.opened_fault == Fault.SLOW_RESPONSES or any(
        s.fault == Fault.SLOW_RESPONSES for s in item.signals.values()
    )


def _window_ref(window: Window) -> str:
    return f"#{window.id}" if window.id else "(recurring, from the config)"


def _with_peak(measured: Affected, peak: float) -> Affected:
    """A share over the incident, with the worst single window beside it."""
    evidence = measured.evidence
    if round(peak, 3) != round(measured.ratio or 0.0, 3):
        evidence += f"; the worst single window of the log: {peak:.1%}"
    return Affected(measured.ratio, measured.method, evidence, peak)


def no_request_time(hosts: list[str]) -> str:
    """The evidence of a slow-responses share the log cannot give: unknown, not 0%."""
    return (
        f"share unknown: log has no request time ({', '.join(hosts)} access log; add"
        " $request_time to its log_format and to error_rate's log_format to measure it)"
    )


def _counted_from(incident: Incident) -> datetime | None:
    """From when the incident's clients count: when harm began. One opened on a risk
    (nginx -t fails while the site is served) counts none until a check measures harm,
    then from that moment: the clients served during the risk (days, maybe) were not
    hurt by it, and counting them would make the share far too low."""
    if incident.opened_on_risk:
        return incident.harm_began
    return incident.started_at


def _epoch_second(at: datetime) -> int:
    return int(at.timestamp() // 1)


def _from_epoch(second: int) -> datetime:
    return datetime.fromtimestamp(second, UTC)


def _on_host(host: str, summary: str) -> str:
    """`lb-01: summary`, unless the summary already starts with the host's name."""
    return summary if summary.startswith(host) else f"{host}: {summary}"


def _causes_line(causes: list[Cause]) -> str:
    return ", ".join(f"{c.fault} ({c.confidence:.0%})" for c in causes[:3])


def apply_alerts(book: IncidentBook, store: Store, alerts: Iterable[Alert]) -> list[int | None]:
    """Apply a webhook's alerts in order: each opens, joins or resolves through the book
    and is remembered by fingerprint, so a late or repeated delivery (Alertmanager
    retries, an HA pair sends everything twice) changes nothing. Returns, per alert, the
    incident it landed in. The daemon's engine thread calls this; so do the tests."""
    results: list[int | None] = []
    for alert in alerts:
        seen = store.alert(alert.fingerprint)
        if is_stale(alert, seen):
            results.append(seen["incident_id"] if seen else None)
            continue
        results.append(
            book.on_alert(
                fingerprint=alert.fingerprint,
                firing=alert.firing,
                name=alert.name,
                service=alert.service,
                host=alert.host,
                fault=alert.fault,
                summary=alert.summary,
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
            )
        )
        store.put_alert(
            alert.fingerprint,
            results[-1],
            "firing" if alert.firing else "resolved",
            alert.name,
            alert.starts_at,
            alert.ends_at,
        )
    if store.in_batch:
        book.flush()  # what the batch's alerts left unwritten (IncidentBook._flush_alert)
    return results


def apply_alert_batches(
    book: IncidentBook, store: Store, batches: list[list[Alert]]
) -> list[list[int | None] | Exception]:
    """Group commit: apply several webhook notifications' alerts in one store transaction,
    so that one fsync acknowledges them all. Returns, per batch, what `apply_alerts`
    returned, or the exception that kept it from being recorded; a caller answers a batch
    only from this, after the commit, so an acknowledged alert is durable.

    When the group cannot be committed the store holds none of it and the book's memory is
    put back as it was; the batches are then tried one at a time, so a batch that fails
    (a bug, a value the store refuses) fails alone and a store that cannot commit at all
    fails each."""
    if not batches:
        return []
    if not book.reload_open():
        refused = StoreError("the open incidents cannot be read back after a failed commit")
        return [refused for _ in batches]
    before = book.snapshot()
    try:
        with store.batch():
            results: list[list[int | None] | Exception] = [
                apply_alerts(book, store, alerts) for alerts in batches
            ]
    except Exception as exc:
        book.rollback(before)
        if len(batches) == 1:
            return [exc]
        return [r for alerts in batches for r in apply_alert_batches(book, store, [alerts])]
    book.committed()
    return results
