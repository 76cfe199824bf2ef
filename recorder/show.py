"""`recorder incidents show`: one incident as an operator reads it at 3 a.m.

What is failing comes first; the checks that passed (one timeline entry per probe and
host, a dozen or more on a small stack) are folded into one line per host, so they
do not bury the signal. When the leading cause only restates the symptom (`http-5xx`:
"there are errors"), the page says where the errors come from and what to read next.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from recorder.config import Config
from recorder.model import EntryKind, Incident, local_time
from recorder.terminal import printable

# Causes that name the symptom rather than a mechanism: the operator needs a place to look.
_SYMPTOMS = frozenset({"http-5xx", "slow-responses"})


def incident_lines(incident: Incident, config: Config) -> list[str]:
    """The page, one line per item, control characters escaped."""
    return [printable(line) for line in _lines(incident, config)]


def _lines(incident: Incident, config: Config) -> list[str]:
    zone = config.zone
    if incident.affected.ratio is not None:
        affected = (
            f"{incident.affected.ratio:.1%} ({incident.affected.method}): "
            f"{incident.affected.evidence}"
        )
    else:
        affected = incident.affected.evidence
    out = [
        f"{incident.ref}  {incident.status_label}  {incident.title}",
        f"service:   {incident.service}   hosts: {', '.join(incident.hosts)}",
        f"started:   {local_time(incident.started_at, zone)}",
        f"detected:  {local_time(incident.detected_at, zone)}",
        f"resolved:  {local_time(incident.resolved_at, zone) if incident.resolved_at else '-'}",
        f"closed:    {local_time(incident.closed_at, zone) if incident.closed_at else '-'}",
        f"affected:  {affected}",
    ]
    signals = signal_lines(incident)
    if signals:
        out.append("signals (failing first):")
        out += [f"  {line}" for line in signals]
    out.append("root causes:")
    out += [
        f"  {c.fault} ({c.confidence:.0%}): " + "; ".join(c.evidence) for c in incident.root_causes
    ]
    where = look_next(incident, config)
    if where:
        out.append(f"look next: {where}")
    out.append("timeline:")
    out += [f"  {line}" for line in _timeline(incident, zone)]
    return out


def signal_lines(incident: Incident) -> list[str]:
    """One line per signal that joined the incident, failing ones first."""
    rows = sorted(incident.signals.values(), key=lambda s: (not s.firing, s.host, s.probe))
    lines = []
    for sig in rows:
        state = "failing" if sig.firing else str(sig.state)
        fault = f" {sig.fault}" if sig.fault else ""
        lines.append(f"{state:<9} {sig.host} {sig.probe}{fault}: {sig.summary}")
    return lines


def look_next(incident: Incident, config: Config) -> str:
    """For a cause that only restates the symptom: the hosts whose own probes saw it."""
    if not incident.root_causes or incident.root_causes[0].fault not in _SYMPTOMS:
        return ""
    fault = incident.root_causes[0].fault
    hosts = sorted(
        {s.host for s in incident.signals.values() if s.fault == fault and s.host in config.hosts}
    )
    backends = [h for h in hosts if config.hosts[h].role != "lb"]
    start = local_time(incident.started_at, config.zone)
    what = "5xx responses" if fault == "http-5xx" else "slow responses"
    if backends:
        healthy = [
            h
            for h in config.hosts_of(incident.service)
            if h not in backends and config.hosts[h].role != "lb"
        ]
        compare = f", and compare with {', '.join(healthy)}" if healthy else ""
        return (
            f"the {what} come from {', '.join(backends)} (its own checks and access log show "
            f"them): read the application's logs and nginx's error log there from {start}"
            f"{compare}"
        )
    if hosts:
        return (
            f"only {', '.join(hosts)} sees the {what}: its nginx error log names the backend "
            f"behind each failed request (upstream: ...) from {start}"
        )
    return ""


@dataclass(frozen=True)
class TimelineRow:
    """One line of the timeline as read: an entry, or the checks that passed on one host
    folded together (`host` set, `probes` the checks, in the order they ran)."""

    at: datetime
    kind: str
    text: str
    source: str
    host: str | None = None
    probes: tuple[str, ...] = ()


def timeline_rows(incident: Incident) -> list[TimelineRow]:
    """The timeline, with the passed checks folded into one row per host (at the time of
    that host's first one). The CLI and the web page both read it."""
    checks = {r.key: r for r in incident.ruled_out}
    passed: dict[str, list[str]] = {}
    for entry in incident.timeline:
        check = checks.get(entry.key) if entry.kind == EntryKind.ACTION else None
        if check is not None:
            passed.setdefault(check.host, []).append(check.probe)
    rows: list[TimelineRow] = []
    shown: set[str] = set()
    for entry in incident.timeline:
        check = checks.get(entry.key) if entry.kind == EntryKind.ACTION else None
        if check is None:
            rows.append(TimelineRow(entry.at, entry.kind, entry.text, entry.source))
            continue
        host = check.host
        if host in shown:
            continue
        shown.add(host)
        probes = tuple(dict.fromkeys(passed[host]))
        text = f"Ruled out on {host}: {', '.join(probes)} (all ok)"
        rows.append(TimelineRow(entry.at, entry.kind, text, entry.source, host, probes))
    return rows


def _timeline(incident: Incident, zone: Any) -> Iterable[str]:
    for row in timeline_rows(incident):
        when = local_time(row.at, zone)
        source = "" if row.host else f" ({row.source})"
        yield f"{when} - [{row.kind}] {row.text}{source}"
