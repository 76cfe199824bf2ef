"""The postmortem draft: an incident rendered with the Jinja2 templates in `templates/`.

`draft_context` decides what the document says; the templates only lay it out. What the
recorder observed is written as fact (times in the configured zone, the affected share
with its evidence, the checks that passed, the recovery); what only a person can know is
a `[[FILL IN: ...]]` marker that `close` and `lint` refuse; what people said (notes in
the timeline, or the flags of `recorder close`, passed here as `overrides`) replaces the
markers. `final=True` renders the document `close` writes: the same facts without the
draft's guidance (banner, commonly misleading paths, the runbook's resolution steps).

Text from logs, alerts and people is untrusted: the Markdown output puts every value on
one line with HTML tags neutralised, so a log line cannot forge a heading or a bullet;
the HTML output is autoescaped.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape

from probes.base import Fault
from probes.facts import Subjects
from recorder.config import Config
from recorder.fillin import PLACEHOLDER_MARK, fill_in
from recorder.formats import POSTMORTEM_FORMATS
from recorder.model import (
    Affected,
    Cause,
    EntryKind,
    Incident,
    Step,
    TimelineEntry,
    duration_words,
    in_zone,
    local_time,
)
from recorder.resources import data_path
from recorder.runbooks import Runbook, RunbookError, load_runbooks

FORMATS = POSTMORTEM_FORMATS

# How each kind of note a person wrote (`recorder note --kind`) reads in the timeline.
_PEOPLE_LABELS = {
    EntryKind.ACTION: "Action",
    EntryKind.MISLEADING: "Misleading path",
    EntryKind.ESCALATION: "Escalation",
    EntryKind.RESOLUTION: "Resolution",
}
PEOPLE_SOURCE = "cli"  # what `recorder note` records as the source of a person's entry
_ACTIONS_WANTED = "what people investigated or changed, and what they assumed the cause was"


class DraftError(Exception):
    """The draft cannot be rendered (unknown format, templates or runbooks unusable)."""


# ---- small pieces of text ---------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` with every run of whitespace, newlines and other control characters (ESC,
    BEL: they would reach a terminal that shows the file) included, as one space."""
    return " ".join(_CONTROL.sub(" ", str(text)).split())


_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


# The `]` that makes a link or an image: `[t](url)`, `![x](url)`, `[t][ref]`, `[ref]: url`.
_LINK_CLOSE = re.compile(r"(\\*)\](?=[(\[:])")


def markdown_safe(text: str) -> str:
    """One line with HTML tags neutralised: a log line cannot add a heading, a bullet or
    markup to a Markdown document (renderers pass raw HTML through). Links and images are
    neutralised too (`\\]` before `(`, `[` or `:`; `<` before an autolink): an alert's
    `![x](http://outside)` would fetch from that host when the document is shown (a read
    receipt), and `[t](javascript:...)` would be a link to click."""
    safe = _TAG_OPEN.sub("&lt;", one_line(text))
    # Backslashes before it doubled, so `\\](` cannot turn the escape into a literal `\\`.
    return _LINK_CLOSE.sub(lambda m: m.group(1) * 2 + "\\]", safe)


def percent(ratio: float) -> str:
    """A share as a percentage with three significant digits: `30.5%`, `0.25%`, `100%`.
    Never rounds a partial share up to 100% or a non-zero one down to 0%."""
    value = ratio * 100
    if value <= 0:
        return "0%"
    if value < 0.001:
        return "<0.001%"
    text = f"{value:.3g}"
    if text == "100" and ratio < 1:
        text = "99.9"
    return f"{text}%"


def _lower_first(title: str) -> str:
    """A runbook title used inside a sentence ("A site is..." -> "a site is..."), leaving
    acronyms ("HTTP ...") alone."""
    if len(title) > 1 and title[1].isupper():
        return title
    return title[:1].lower() + title[1:]


def _zone_names(zone: ZoneInfo, at: datetime) -> list[str]:
    """The zone as written out: `["EAT", "Africa/Nairobi"]`, or just `["UTC"]` where the
    abbreviation is the zone's name."""
    abbreviation = in_zone(at, zone).tzname() or zone.key
    return [abbreviation] if abbreviation == zone.key else [abbreviation, zone.key]


# ---- times people write ----------------------------------------------------------------------

_LEADING_TIME = re.compile(
    r"^\s*(?:(?P<date>\d{4}-\d{2}-\d{2})[ T])?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?(?!\d)(?!:\d)"
)
_ZONE_TOKEN = re.compile(r"^\s*\(?(?P<zone>[A-Za-z][A-Za-z_/]*)\)?(?=[\s:,\-–—]|$)")
_SEPARATOR = re.compile(r"^\s*[-–—:,]?\s*")
_UTC_NAMES = frozenset({"UTC", "GMT", "Z"})
_UTC_ZONE = ZoneInfo("UTC")


def leading_time(
    text: str, zone: ZoneInfo, start: datetime, end: datetime | None
) -> tuple[datetime | None, str]:
    """The time a person put at the start of `text` ("14:33 platform-team", "14:40 EAT:
    paged Amina", "11:45 UTC restarted nginx"), as UTC, and the text after it.

    A bare clock time is read in `zone` (or UTC when followed by UTC/GMT/Z) on the day
    that puts it closest to the incident (`start` to `end`), so `00:10` after an incident
    that ran past midnight is the next day. Without a valid leading time: (None, text).
    """
    try:
        return _leading_time(text, zone, start, end)
    except (OverflowError, ValueError):  # an incident stored at the ends of datetime's range
        return None, text


def _leading_time(
    text: str, zone: ZoneInfo, start: datetime, end: datetime | None
) -> tuple[datetime | None, str]:
    match = _LEADING_TIME.match(text)
    if not match:
        return None, text
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        return None, text
    rest = text[match.end() :]
    if rest and not (rest[0].isspace() or rest[0] in "-–—:,("):
        return None, text  # "14:40x" is not a time followed by text
    # A zone written after the time is read only when it is UTC or the configured zone:
    # "14:40 DB team paged" is the DB team, not a zone called DB.
    where = zone
    token = _ZONE_TOKEN.match(rest)
    if token:
        names = {
            zone.key,
            in_zone(start, zone).tzname(),
            in_zone((end or start), zone).tzname(),
        }
        if token["zone"] in _UTC_NAMES:
            where = _UTC_ZONE
            rest = rest[token.end() :]
        elif token["zone"] in names:
            rest = rest[token.end() :]
    rest = _SEPARATOR.sub("", rest, count=1).strip()
    if not rest:
        return None, text  # a time alone says nothing happened
    clock = time(hour, minute, second)
    if match["date"]:
        try:
            day = date.fromisoformat(match["date"])
        except ValueError:
            return None, text
        return datetime.combine(day, clock, tzinfo=where).astimezone(UTC), rest
    last = end or start
    first_day = start.astimezone(where).date() - timedelta(days=1)
    days = (last.astimezone(where).date() - first_day).days + 2
    best: tuple[timedelta, datetime] | None = None
    for offset in range(days):
        candidate = datetime.combine(first_day + timedelta(days=offset), clock, tzinfo=where)
        if candidate < start:
            distance = start - candidate
        elif candidate > last:
            distance = candidate - last
        else:
            distance = timedelta(0)
        if best is None or distance < best[0]:
            best = (distance, candidate)
    assert best is not None  # days >= 2: at least one candidate
    return best[1].astimezone(UTC), rest


# ---- what the evidence names -----------------------------------------------------------------


def cause_hosts(incident: Incident, top: Cause | None) -> list[str]:
    """The hosts where the fault of `top` was observed itself (for upstream-down: the load
    balancer, not the backend); every host of the incident when no signal names it."""
    if top is not None:
        hosts = [s.host for s in incident.signals.values() if s.fault == top.fault and s.host]
        if hosts:
            return list(dict.fromkeys(hosts))
    return list(incident.hosts)


def _probe_setting(config: Config, host: str, name: str) -> str | None:
    """The first non-empty text setting `name` of a probe configured on `host` (`url`: the
    URL template of the probe that requests the site)."""
    for _, _, settings in config.checks_for(host):
        value = getattr(settings, name, None)
        if isinstance(value, str) and value:
            return value
    return None


def service_url(config: Config, incident: Incident, hosts: Sequence[str]) -> str | None:
    """The URL users hit: the probes' URL setting on the service's entry point (else on the
    hosts involved), with `{address}` and `{host}` filled as the probe fills them."""
    order = [
        *config.entrypoints_of(incident.service),
        *hosts,
        *incident.hosts,
        *config.hosts_of(incident.service),
    ]
    for host in dict.fromkeys(order):
        url = _probe_setting(config, host, "url")
        host_config = config.hosts.get(host)
        if url and host_config is not None:
            return url.replace("{address}", host_config.probe_address).replace("{host}", host)
    return None


def _deployed_version(incident: Incident) -> str | None:
    """The version of the service's latest deploy before harm began (else the
    latest after), from the deploy entries' stored event data; the engine writes an entry for
    every deploy it holds as a suspect (incidents.py, DEPLOY_LOOKBACK)."""
    deploys = [
        (e.at, e.deployed.version)
        for e in incident.timeline
        if e.kind == EntryKind.DEPLOY
        and e.deployed is not None
        and e.deployed.service == incident.service
    ]
    before = [d for d in deploys if d[0] <= incident.started_at]
    if before or deploys:
        return max(before or deploys, key=lambda d: d[0])[1]
    return None


def task_context(incident: Incident, config: Config, top: Cause | None) -> dict[str, str]:
    """Values for the runbook's task placeholders (recorder.runbooks.PLACEHOLDERS) taken
    from what was observed. A value nothing observed names is left out, so the task keeps
    a `[[FILL IN: name]]` marker for a person rather than a guess."""
    hosts = cause_hosts(incident, top)
    context: dict[str, str] = {"service": incident.service}
    if hosts:
        context["host"] = ", ".join(hosts)
    url = service_url(config, incident, hosts)
    if url:
        context["url"] = url
    # What the probes named (probes/facts.py), the signals of the top fault first.
    signals = list(incident.signals.values())
    if top is not None:
        signals.sort(key=lambda s: s.fault != top.fault)
    for sig in signals:
        values = (sig.subjects or Subjects()).placeholders()
        if "file" in context:
            values.pop("line", None)  # a line belongs to its own file
        for name, value in values.items():
            context.setdefault(name, value)
    version = _deployed_version(incident)
    if version:
        context["version"] = version
    return context


# ---- the context --------------------------------------------------------------------------------


@dataclass
class _Item:
    """One timeline bullet; `at` orders it (None: a placeholder without a time)."""

    at: datetime | None
    time: str
    text: str
    sub: list[str] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)  # a host's ruled-out checks
    says_resolved: bool = False  # the recorder's last "resolved" bullet

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "text": one_line(self.text),
            "sub": [one_line(s) for s in self.sub],
        }


def _given(overrides: Mapping[str, Any], key: str) -> str | None:
    value = overrides.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _given_list(overrides: Mapping[str, Any], key: str) -> list[str]:
    value = overrides.get(key)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence):
        return []
    return [str(v).strip() for v in value if str(v).strip()]


def _merged(incident: Incident, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """What people said: stored with the incident (earlier `close` attempts), then the
    flags given now; an empty flag keeps what was stored."""
    merged = dict(incident.postmortem)
    for key, value in (overrides or {}).items():
        if value is None or (isinstance(value, str | list | tuple) and not value):
            continue
        merged[key] = value
    return merged


def _recovery_start(entries: Sequence[TimelineEntry]) -> datetime | None:
    """When the final recovery began: recovery entries after the last failure (a flap
    that failed again starts the story over)."""
    last_failure: datetime | None = None
    for e in entries:
        if e.kind in (EntryKind.IMPACT_START, EntryKind.DETECTION) or e.step in (
            Step.FAILED_AGAIN,
            Step.ALSO_FAILING,
        ):
            last_failure = e.at if last_failure is None else max(last_failure, e.at)
    recoveries = [
        e.at for e in entries if _is_recovery(e) and (last_failure is None or e.at >= last_failure)
    ]
    return min(recoveries) if recoveries else None


def _is_recovery(entry: TimelineEntry) -> bool:
    return entry.step is Step.RECOVERED or (
        entry.kind == EntryKind.RESOLUTION and entry.source != PEOPLE_SOURCE
    )


def _strip_prefix(text: str, prefix: str) -> str:
    """`Escalated to` + "escalated to X" must not say it twice."""
    if text.lower().startswith(prefix.lower()):
        return text[len(prefix) :].lstrip(" :-")
    return text


def _said_when(incident: Incident, zone: ZoneInfo, text: str) -> _Item:
    """A bullet for what a person said in a flag: at the time they put in front of it;
    without one, over the response (detection to resolution), sorted at detection; while
    the incident is open, at a time left for them to fill in."""
    end = incident.resolved_at or max([incident.detected_at, *(e.at for e in incident.timeline)])
    at, rest = leading_time(text, zone, incident.started_at, end)
    if at is not None:
        return _Item(at, local_time(at, zone), rest)
    if incident.resolved_at is None:
        return _Item(None, fill_in("time"), text)
    detected = incident.detected_at
    span = f"{local_time(detected, zone)} to {local_time(incident.resolved_at, zone)}"
    return _Item(detected, span, text)


def _observed_items(incident: Incident, zone: ZoneInfo) -> tuple[list[_Item], list[_Item]]:
    """The recorder's own entries as bullets (ruled-out checks joined per host), and the
    bullets of the final recovery."""
    items: list[_Item] = []
    recovered: list[_Item] = []
    ruled_out: dict[str, _Item] = {}
    checks = {r.key: r for r in incident.ruled_out}
    entries = sorted(incident.timeline, key=lambda e: e.at)
    recovery_start = _recovery_start(entries)
    resolutions = [e for e in entries if e.kind == EntryKind.RESOLUTION and _is_recovery(e)]
    for entry in entries:
        stamp = local_time(entry.at, zone)
        checked = checks.get(entry.key) if entry.source != PEOPLE_SOURCE else None
        if entry.kind == EntryKind.ACTION and checked is not None:
            host, passed = checked.host, f"{checked.probe} ({one_line(checked.summary)})"
            group = ruled_out.get(host)
            if group is None:
                group = _Item(entry.at, stamp, f"Checked {host}: passed, so ruled out: ")
                ruled_out[host] = group
                items.append(group)
            group.passed.append(passed)
            continue
        text = entry.text
        if entry.source == PEOPLE_SOURCE and entry.kind in _PEOPLE_LABELS:
            text = f"{_PEOPLE_LABELS[EntryKind(entry.kind)]}: {text}"
        item = _Item(entry.at, stamp, text)
        items.append(item)
        if _is_recovery(entry) and recovery_start is not None and entry.at >= recovery_start:
            recovered.append(item)
        item.says_resolved = bool(resolutions) and entry is resolutions[-1]
    for group in ruled_out.values():
        # By probe name, not by which answered first (a sweep runs them in parallel), so
        # a draft reads the same whichever finished first; and " · " between them, as
        # summaries themselves use "; " and "," (nothing a probe writes holds " · ").
        group.text += " · ".join(sorted(group.passed))
    return items, recovered


def _timeline(
    incident: Incident,
    config: Config,
    said: Mapping[str, Any],
    runbook: Runbook | None,
    *,
    final: bool,
) -> tuple[list[_Item], list[dict[str, str]]]:
    zone = config.zone
    items, recovered = _observed_items(incident, zone)
    observed = [{"time": i.time, "text": one_line(i.text)} for i in recovered]

    resolution = _given(said, "resolution")
    people_resolved = any(
        e.kind == EntryKind.RESOLUTION and e.source == PEOPLE_SOURCE for e in incident.timeline
    )
    for item in items:
        if item.says_resolved:
            if resolution:
                item.text = f"{item.text}. Fixed by: {resolution}"
            elif not people_resolved:
                item.text = f"{item.text}. {fill_in('what fixed it')}"

    timed: list[_Item] = []
    misleading = _given_list(said, "misleading")
    for text in misleading:
        item = _said_when(incident, zone, text)
        item.text = f"Misleading path: {item.text}"
        timed.append(item)
    escalated_to = _given(said, "escalated_to")
    if escalated_to:
        item = _said_when(incident, zone, escalated_to)
        item.text = f"Escalated to {_strip_prefix(item.text, 'escalated to ')}"
        timed.append(item)
    untimed = [i for i in timed if i.at is None]
    for item in (i for i in timed if i.at is not None):
        assert item.at is not None
        keys = [i.at if i.at is not None else datetime.max.replace(tzinfo=UTC) for i in items]
        items.insert(bisect_right(keys, item.at), item)

    # What only people know, where it belongs in the story: after detection and the
    # recorder's diagnostics, before the recovery.
    kinds = {(e.kind, e.source) for e in incident.timeline}
    placeholders: list[_Item] = []
    acted = any(k == EntryKind.ACTION and s == PEOPLE_SOURCE for k, s in kinds)
    misled = bool(misleading) or any(k == EntryKind.MISLEADING for k, _ in kinds)
    if not acted and not misled:
        placeholders.append(
            _Item(
                None,
                fill_in("time"),
                f"{fill_in(_ACTIONS_WANTED)} (record it as it happens: "
                f"recorder note {incident.id} --kind action TEXT)",
            )
        )
    if not escalated_to and not any(k == EntryKind.ESCALATION for k, _ in kinds):
        service = config.services.get(incident.service)
        team = f"{service.escalation} " if service and service.escalation else ""
        placeholders.append(
            _Item(None, fill_in("time"), f"Escalated to {team}{fill_in('who was paged and when')}")
        )
    placeholders.extend(untimed)
    if not misled:
        item = _Item(None, fill_in("time"), fill_in('misleading paths taken, or "none"'))
        if runbook is not None and not final:
            item.text += " Common ones for this fault:"
            item.sub = list(runbook.misleading)
        placeholders.append(item)
    first_recovery = next((n for n, i in enumerate(items) if i in recovered), len(items))
    items[first_recovery:first_recovery] = placeholders
    if incident.resolved_at is None:
        items.append(
            _Item(
                None,
                fill_in("time"),
                f"{fill_in('how the incident was resolved')} (still open: the recorder has not "
                "seen every signal recover)",
            )
        )
    return items, observed


def _began(incident: Incident, zone: ZoneInfo) -> str:
    """What began at `started_at`: harm, or for an incident opened on a risk (nginx -t
    fails while the running nginx serves its last good configuration) the risk, and the
    harm a later check measured, if any. Detection is timed from it either way."""
    if not incident.opened_on_risk:
        return "harm began"
    harm = incident.harm_began
    if harm is None:
        return "the risk began (no failed user requests measured)"
    return f"the risk began; user harm began {local_time(harm, zone)}"


def _mermaid(incident: Incident, zone: ZoneInfo) -> list[str]:
    """A Mermaid gantt of the incident: harm, detection delay, response, deploys."""

    def at(value: datetime) -> str:
        return in_zone(value, zone).strftime("%Y-%m-%d %H:%M:%S")

    start, detected = incident.started_at, incident.detected_at
    still_open = incident.resolved_at is None
    end = incident.resolved_at or max([detected, *(e.at for e in incident.timeline)])
    deploys = [
        e for e in sorted(incident.timeline, key=lambda e: e.at) if e.kind == EntryKind.DEPLOY
    ]
    points = [start, detected, end, *(e.at for e in deploys)]
    days = {in_zone(p, zone).date() for p in points}
    suffix = " (still open)" if still_open else ""
    lines = [
        "gantt",
        f"title {incident.ref} {one_line(incident.service)} (times in "
        f"{', '.join(_zone_names(zone, start))})",
        "dateFormat YYYY-MM-DD HH:mm:ss",
        "axisFormat %H:%M" if len(days) == 1 else "axisFormat %m-%d %H:%M",
        "section Users",
        *_user_bars(incident, start, end, suffix, at),
        "section Recorder",
        f"Until detection :done, wait, {at(start)}, {at(max(start, detected))}",
        f"Detected :milestone, detected, {at(detected)}, 0m",
    ]
    for n, entry in enumerate(deploys, 1):
        name = f"Deploy {entry.deployed.version}" if entry.deployed else "Deploy"
        name = re.sub(r"[^A-Za-z0-9 ._/()-]", "-", name)
        lines.append(f"{name} :milestone, deploy{n}, {at(entry.at)}, 0m")
    lines += [
        "section Response",
        f"Response{suffix} :active, response, {at(detected)}, {at(max(detected, end))}",
    ]
    if not still_open:
        lines.append(f"Resolved :milestone, resolved, {at(end)}, 0m")
    return lines


def _user_bars(
    incident: Incident, start: datetime, end: datetime, suffix: str, at: Callable[[datetime], str]
) -> list[str]:
    """The gantt's users section: harm; for an incident opened on a risk, the risk until
    measured harm began (all of it when none was)."""
    if not incident.opened_on_risk:
        return [f"Harm{suffix} :crit, harm, {at(start)}, {at(max(start, end))}"]
    harm = incident.harm_began
    if harm is None:
        name = f"Risk (no user harm measured){suffix}"
        return [f"{name} :active, risk, {at(start)}, {at(max(start, end))}"]
    return [
        f"Risk :active, risk, {at(start)}, {at(max(start, harm))}",
        f"Harm{suffix} :crit, harm, {at(harm)}, {at(max(harm, end))}",
    ]


def _background(runbook: Runbook) -> list[dict[str, Any]]:
    """The runbook's `causes` as paragraphs, each with the bullet list that follows it.
    A line that is neither a bullet nor after a blank line continues what precedes it."""
    blocks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for raw in runbook.causes.splitlines():
        text = raw.strip()
        if not text:
            current = None
            continue
        if current is None:
            current = {"text": "", "items": []}
            blocks.append(current)
        if text.startswith("- "):
            current["items"].append(text[2:].strip())
        elif current["items"]:
            current["items"][-1] += " " + text
        else:
            current["text"] = f"{current['text']} {text}".strip()
    return blocks


def _runbook_of(fault: str | None, runbooks: Mapping[Fault, Runbook]) -> Runbook | None:
    try:
        return runbooks.get(Fault(fault)) if fault else None
    except ValueError:
        return None  # a fault kind this version does not know (an older store)


def draft_context(
    incident: Incident,
    config: Config,
    overrides: Mapping[str, Any] | None = None,
    *,
    final: bool = False,
    runbooks: Mapping[Fault, Runbook] | None = None,
) -> dict[str, Any]:
    """Everything the templates show for `incident`, decided here.

    `overrides` are what people said when closing (root_cause, resolution, misleading,
    escalated_to, tasks, affected); they extend what the incident already stores in
    `postmortem`. `runbooks` defaults to the shipped ones.
    """
    books = load_runbooks() if runbooks is None else runbooks
    zone = config.zone
    said = _merged(incident, overrides)
    top = incident.root_causes[0] if incident.root_causes else None
    runbook = _runbook_of(top.fault if top else incident.fault, books)
    top_book = _runbook_of(top.fault, books) if top else None
    hosts = cause_hosts(incident, top)
    where = f" on {', '.join(hosts)}" if hosts else ""

    start, detected, resolved = incident.started_at, incident.detected_at, incident.resolved_at
    detection = next((e for e in incident.timeline if e.kind == EntryKind.DETECTION), None)
    if detection is None:
        how = "by the recorder"
    elif detection.source == "alertmanager":
        how = "by an Alertmanager alert"
    else:
        how = f"by the recorder's {detection.source} probe"
    affected = incident.affected
    if _given(said, "affected"):
        affected_text = str(_given(said, "affected"))
    elif affected.ratio is None:
        affected_text = fill_in("the share of users affected, as a percentage")
        if affected.method != Affected().method:
            # Measured, and the measure could not say (a log without request times).
            affected_text += f" (the recorder could not measure it: {affected.evidence})"
    else:
        affected_text = (
            f"{percent(affected.ratio)} of users (method `{affected.method}`): {affected.evidence}"
        )
    root_cause = _given(said, "root_cause")
    if root_cause:
        summary_cause = root_cause
    elif top is not None:
        label = _lower_first(top_book.title) if top_book else f"`{top.fault}`"
        because = f" ({top.evidence[0]})" if top.evidence else ""
        summary_cause = (
            f"Most likely {label}{where}{because}, by the recorder's ranking at "
            f"{top.confidence:.0%} confidence. {fill_in('confirm the root cause')}"
        )
    else:
        summary_cause = fill_in("the root cause in a sentence or two")
    summary = {
        "duration": duration_words(resolved - start) if resolved else "still open",
        "start": local_time(start, zone),
        "end": local_time(resolved, zone) if resolved else fill_in("end time"),
        "detected": f"{local_time(detected, zone)}, {how}, "
        f"{duration_words(detected - start)} after {_began(incident, zone)}",
        "service": f"{incident.service} (hosts involved: {', '.join(incident.hosts)})"
        if incident.hosts
        else incident.service,
        "experience": runbook.users_experience
        if runbook
        else fill_in("what users experienced: errors, timeouts, could not log in"),
        "affected": affected_text,
        "root_cause": summary_cause,
    }

    items, observed = _timeline(incident, config, said, runbook, final=final)

    cause: dict[str, Any] = {
        "confirmed": root_cause or fill_in("confirm the root cause, explained in detail"),
        "candidate": "",
        "evidence": [],
        "title": "",
        "background": [],
        "others": [],
    }
    if top is not None:
        label = _lower_first(top_book.title) if top_book else top.fault
        cause["candidate"] = (
            f"The recorder's leading candidate: {label} (`{top.fault}`, "
            f"{top.confidence:.0%} confidence){',' + where if where else ''}."
        )
        cause["evidence"] = list(top.evidence)
    if top_book is not None:
        cause["title"] = top_book.title
        cause["background"] = _background(top_book)
    for other in incident.root_causes[1:]:
        book = _runbook_of(other.fault, books)
        name = book.title if book else other.fault
        cause["others"].append(
            {
                "label": f"{name} (`{other.fault}`, {other.confidence:.0%})",
                "evidence": list(other.evidence),
            }
        )

    resolution = _given(said, "resolution")
    if resolution:
        resolution_text = resolution
    else:
        resolution_text = fill_in(
            "how it was fixed, in detail: what was changed, where and by whom"
        )
        if resolved is None:
            resolution_text += " (the incident is still open)"

    return {
        "ref": incident.ref,
        "id": incident.id,
        "title": incident.title,
        "status": incident.status,
        "final": final,
        "service": incident.service,
        "fault": incident.fault or (top.fault if top else "unknown"),
        "zone": " ".join(
            f"({name})" if n else name for n, name in enumerate(_zone_names(zone, start))
        ),
        "summary": summary,
        "timeline": [i.as_dict() for i in items],
        "mermaid": _mermaid(incident, zone),
        "cause": cause,
        "resolution": {
            "text": resolution_text,
            "observed": observed,
            "steps": [] if final or top_book is None else list(top_book.resolution),
        },
        "improvements": list(top_book.improvements)
        if top_book
        else [fill_in("what can be improved, broadly")],
        "tasks": _tasks(incident, config, said, top, top_book),
    }


def _tasks(
    incident: Incident,
    config: Config,
    said: Mapping[str, Any],
    top: Cause | None,
    runbook: Runbook | None,
) -> list[str]:
    """People's tasks first, then the runbook's filled from the evidence. A suggested task
    that still lacks a value is dropped once people gave tasks of their own (they chose
    what to do); otherwise it stays, marked, and blocks the close until someone fills it."""
    given = _given_list(said, "tasks")
    suggested = runbook.render_tasks(task_context(incident, config, top)) if runbook else []
    if given:
        suggested = [t for t in suggested if PLACEHOLDER_MARK not in t]
    tasks = list(dict.fromkeys([*given, *suggested]))
    return tasks or [fill_in("specific corrective tasks, one per line")]


# ---- rendering --------------------------------------------------------------------------------

_MARKER = re.compile(re.escape(PLACEHOLDER_MARK) + r"[^\]\n]*\]\]")
_BACKTICKS = re.compile(r"`([^`\n]+)`")


def _mark(html: Markup) -> Markup:
    """Highlight every FILL IN marker of escaped text."""
    return Markup(_MARKER.sub(lambda m: f"<mark>{m.group(0)}</mark>", str(html)))


def _html_value(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    return _mark(escape(one_line(str(value))))


def _html_code(value: Any) -> Markup:
    """Backticked spans as <code>, on escaped text (runbook and evidence text)."""
    if isinstance(value, Markup):
        return value
    html = str(escape(one_line(str(value))))
    return _mark(Markup(_BACKTICKS.sub(r"<code>\1</code>", html)))


def _markdown_value(value: Any) -> str:
    return markdown_safe(str(value))


@functools.lru_cache(maxsize=4)
def _environment(fmt: str) -> jinja2.Environment:
    try:
        templates = data_path("templates")
    except FileNotFoundError as exc:
        raise DraftError(str(exc)) from None
    html = fmt == "html"
    finalize: Callable[[Any], Any] = _html_value if html else _markdown_value
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["code"] = _html_code if html else (lambda value: value)
    return env


def render_draft(
    incident: Incident,
    config: Config,
    fmt: str = "md",
    overrides: Mapping[str, Any] | None = None,
    *,
    final: bool = False,
) -> str:
    """The postmortem of `incident` as Markdown (`md`) or one HTML page (`html`).

    Draft by default; `final=True` is what `recorder close` writes: no banner, no
    suggested misleading paths, no runbook steps. Raises DraftError for an unknown format
    or when the templates or runbooks cannot be used.
    """
    if fmt not in FORMATS:
        raise DraftError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    try:
        context = draft_context(incident, config, overrides, final=final)
    except RunbookError as exc:
        raise DraftError(f"cannot read the runbooks: {exc}") from None
    try:
        template = _environment(fmt).get_template(FORMATS[fmt])
        return template.render(context)
    except jinja2.TemplateError as exc:
        raise DraftError(f"cannot render {FORMATS[fmt]}: {exc}") from None


__all__ = [
    "FORMATS",
    "DraftError",
    "cause_hosts",
    "draft_context",
    "leading_time",
    "markdown_safe",
    "one_line",
    "percent",
    "render_draft",
    "service_url",
    "task_context",
]
