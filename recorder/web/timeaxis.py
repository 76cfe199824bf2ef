"""The incident's time axis as inline SVG, drawn on the server: harm as a bar from its
start to its end (or now), and a mark for detection, each deploy, each note a person
wrote, and the resolution. No script, no style attribute (the CSP forbids both): the
stylesheet colours the classes, and each mark carries a <title> for its text."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from recorder.model import EntryKind, Incident, local_time, utcnow
from recorder.postmortem.draft import PEOPLE_SOURCE

WIDTH = 800
HEIGHT = 150
LEFT, RIGHT = 20, 20
AXIS_Y = 110


@dataclass(frozen=True)
class Mark:
    at: datetime
    kind: str  # detection, deploy, note, resolution: the CSS class
    label: str


def is_human(source: str) -> bool:
    """A timeline entry a person wrote (`recorder note`), not the recorder."""
    return source == PEOPLE_SOURCE


def marks(incident: Incident) -> list[Mark]:
    found = [Mark(incident.detected_at, "detection", "detected")]
    for entry in incident.timeline:
        if entry.kind == EntryKind.DEPLOY:
            found.append(Mark(entry.at, "deploy", entry.text))
        elif is_human(entry.source):
            found.append(Mark(entry.at, "note", entry.text))
    if incident.resolved_at:
        found.append(Mark(incident.resolved_at, "resolution", "resolved"))
    return found


def _ticks(start: datetime, end: datetime, count: int = 5) -> list[datetime]:
    span = (end - start) / max(1, count - 1)
    return [start + span * i for i in range(count)]


def time_axis(incident: Incident, zone: ZoneInfo, now: datetime | None = None) -> Markup:
    now = now or utcnow()
    harm_end = incident.resolved_at or now
    all_marks = marks(incident)
    times = [incident.started_at, harm_end, *(m.at for m in all_marks)]
    first, last = min(times), max(times)
    pad = max((last - first) * 0.05, timedelta(seconds=5))
    t0, t1 = first - pad, last + pad
    scale = (WIDTH - LEFT - RIGHT) / max((t1 - t0).total_seconds(), 1.0)

    def x(at: datetime) -> float:
        return round(LEFT + (at - t0).total_seconds() * scale, 1)

    zone_name = incident.started_at.astimezone(zone).tzname() or zone.key
    label = (
        f"{incident.ref} time axis, {zone_name}: harm from "
        f"{local_time(incident.started_at, zone)} to "
        f"{local_time(incident.resolved_at, zone) if incident.resolved_at else 'now (open)'}"
    )
    parts = [
        f'<svg class="timeaxis" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{LEFT}" y1="{AXIS_Y}" x2="{WIDTH - RIGHT}" y2="{AXIS_Y}"/>',
    ]
    harm_x, harm_w = x(incident.started_at), max(2.0, x(harm_end) - x(incident.started_at))
    harm_class = "harm" if incident.resolved_at else "harm ongoing"
    parts.append(
        f'<rect class="{harm_class}" x="{harm_x}" y="{AXIS_Y - 30}" '
        f'width="{round(harm_w, 1)}" height="24"><title>harm: '
        f"{escape(local_time(incident.started_at, zone))} to "
        f"{escape(local_time(harm_end, zone)) if incident.resolved_at else 'now'}</title></rect>"
    )
    parts.append(f'<text class="lane" x="{harm_x + 4}" y="{AXIS_Y - 13}">harm</text>')
    # Marks stagger over three rows so labels next to each other stay readable.
    for i, mark in enumerate(sorted(all_marks, key=lambda m: m.at)):
        mx = x(mark.at)
        top = 14 + (i % 3) * 20
        title = f"{local_time(mark.at, zone)} {mark.kind}: {mark.label}"
        parts.append(
            f'<g class="mark {mark.kind}"><title>{escape(title)}</title>'
            f'<line x1="{mx}" y1="{top + 4}" x2="{mx}" y2="{AXIS_Y}"/>'
            f'<circle cx="{mx}" cy="{top}" r="4"/>'
            f'<text x="{mx + 7}" y="{top + 4}">{escape(mark.kind)}</text></g>'
        )
    for tick in _ticks(t0, t1):
        tx = x(tick)
        anchor = "start" if tx < LEFT + 40 else "end" if tx > WIDTH - RIGHT - 40 else "middle"
        text = tick.astimezone(zone).strftime("%H:%M:%S")
        parts.append(
            f'<line class="tick" x1="{tx}" y1="{AXIS_Y}" x2="{tx}" y2="{AXIS_Y + 5}"/>'
            f'<text class="tick" x="{tx}" y="{AXIS_Y + 20}" text-anchor="{anchor}">{text}</text>'
        )
    parts.append(
        f'<text class="tick" x="{WIDTH - RIGHT}" y="{HEIGHT - 4}" text-anchor="end">'
        f"{escape(zone_name)}</text>"
    )
    parts.append("</svg>")
    return Markup("".join(parts))
