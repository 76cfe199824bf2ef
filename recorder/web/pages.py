"""The read-only web pages, rendered on the server from the store with the Jinja2 templates
in `templates/web/` (autoescaped: notes, alert labels, log lines and host names arrive
from outside and are shown as text).

Pages: `/` incidents (open first; filters by service, status, fault), `/incidents/ID`
(summary, causes, timeline, time axis, draft or final document), `/postmortems` and
`/postmortems/ID` (the final documents `recorder close` wrote). No script anywhere: a
page reads completely without JavaScript, and the CSP (api.py) forbids it.
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup

from recorder.config import Config
from recorder.history import Availability, History
from recorder.model import Incident, IncidentStatus, duration_words, local_time, utcnow
from recorder.postmortem.close import document_tasks, fill_hint, final_path, short_flags
from recorder.postmortem.draft import DraftError, percent, render_draft
from recorder.postmortem.lint import lint_text
from recorder.resources import data_path
from recorder.show import TimelineRow, look_next, signal_lines, timeline_rows
from recorder.store import Store
from recorder.web.markdown import to_html
from recorder.web.timeaxis import is_human, time_axis

PAGE_SIZE = 100  # rows on one page of a list
# Hosts on one /status page: a fleet's page stays a size a browser draws at once and the
# server renders in milliseconds (BENCHMARKS.md section 6).
STATUS_PAGE_HOSTS = 100
TROUBLE_SHOWN = 50  # hosts not ok named (and linked) above the first host


class NotFound(Exception):
    """No such incident (or no final document for it)."""


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_path("templates") / "web")),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static(name: str) -> bytes:
    """One of the pages' own files (templates/web/): the stylesheet, the icon."""
    return (data_path("templates") / "web" / name).read_bytes()


@dataclass(frozen=True)
class Row:
    """One incident in a list."""

    id: int
    ref: str
    status: str
    title: str
    service: str
    fault: str
    started: str
    duration: str
    affected: str
    affected_method: str
    top_cause: str


@dataclass(frozen=True)
class Entry:
    """One timeline row on the incident page."""

    time: str
    kind: str
    text: str
    source: str
    human: bool
    ruled_out: bool


def _duration(incident: Incident, now: datetime) -> str:
    end = incident.resolved_at or now
    words = duration_words(end - incident.started_at)
    return words if incident.resolved_at else f"{words} so far"


def _affected(incident: Incident) -> str:
    ratio = incident.affected.ratio
    return percent(ratio) if ratio is not None else "not measured"


def _top_cause(incident: Incident) -> str:
    if not incident.root_causes:
        return "-"
    top = incident.root_causes[0]
    return f"{top.fault} ({top.confidence:.0%})"


def _row(incident: Incident, config: Config, now: datetime) -> Row:
    return Row(
        id=incident.id,
        ref=incident.ref,
        status=incident.status,
        title=incident.title,
        service=incident.service,
        fault=incident.fault or "-",
        started=local_time(incident.started_at, config.zone),
        duration=_duration(incident, now),
        affected=_affected(incident),
        affected_method=incident.affected.method,
        top_cause=_top_cause(incident),
    )


def _page(template: str, config: Config, **context: Any) -> str:
    return (
        environment()
        .get_template(template)
        .render(title=context.pop("title"), zone=config.timezone, **context)
    )


def _pages(total: int, page: int, query: dict[str, str], size: int = PAGE_SIZE) -> dict[str, str]:
    """Links to the newer and older pages of a list, keeping its filters."""
    links: dict[str, str] = {}
    kept = {k: v for k, v in query.items() if v}
    if page > 1:
        links["newer"] = "?" + urlencode({**kept, "page": page - 1} if page > 2 else kept)
    if page * size < total:
        links["older"] = "?" + urlencode({**kept, "page": page + 1})
    return links


def incidents_page(
    store: Store,
    config: Config,
    *,
    service: str = "",
    status: str = "",
    fault: str = "",
    page: int = 1,
    now: datetime | None = None,
) -> str:
    """`/`: open incidents first, then the most recent, PAGE_SIZE a page; exact filters."""
    now = now or utcnow()
    page = max(1, page)
    shown, total = store.page(
        status=status or None,
        service=service or None,
        fault=fault or None,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    chosen = {"service": service, "status": status, "fault": fault}
    return _page(
        "incidents.html.j2",
        config,
        title="Incidents",
        rows=[_row(i, config, now) for i in shown],
        total=total,
        first=(page - 1) * PAGE_SIZE + 1,
        links=_pages(total, page, chosen),
        services=sorted(set(store.distinct("service")) | set(config.services)),
        statuses=[str(s) for s in IncidentStatus],
        faults=store.distinct("fault"),
        chosen=chosen,
    )


def _entry(row: TimelineRow, config: Config) -> Entry:
    return Entry(
        time=local_time(row.at, config.zone),
        kind=row.kind,
        text=row.text,
        source=row.source,
        human=is_human(row.source),
        ruled_out=row.host is not None,
    )


def close_command(incident: Incident, draft_text: str) -> tuple[str, str]:
    """The commands that finish the postmortem: `recorder close` with one flag for each gap
    the draft still has, as `recorder close` itself would name it (close.fill_hint), and,
    when no action of people's is recorded yet, the `recorder note` that records one
    (close has no flag for it: naming its `--kind` in the close command made a command
    close refuses). A root cause or resolution kept from a refused close is asked for
    again when too short: the draft reads as if it were given, `close` refuses it."""
    tasks = document_tasks(draft_text)
    flags: list[str] = []
    note = ""
    gaps = short_flags(incident.postmortem)
    gaps += [f"{gap.section}: {gap.message}" for gap in lint_text(draft_text, "draft")]
    for gap in gaps:
        hint = fill_hint(gap, draft_text, tasks)
        # A hint is one flag, or alternatives: "`recorder note ID ...` or --escalated-to".
        for option in hint.split(" or "):
            if option.startswith("`recorder note"):
                note = f"recorder note {incident.id} --kind action {shlex.quote('...')}"
            elif option.startswith("--"):
                if option not in flags:
                    flags.append(option)
                break
    # What no flag fills (an end time while it is still open, a section rewritten by
    # hand) is done in the editor: --edit last, after the flags it starts from.
    words = [f"recorder close {incident.id}"]
    words += [f"{flag} {shlex.quote('...')}" for flag in flags if flag != "--edit"]
    if "--edit" in flags:
        words.append("--edit")
    return " ".join(words), note


def final_document(incident: Incident, config: Config) -> str | None:
    """The text `recorder close` wrote for a closed incident, or None."""
    if incident.status != IncidentStatus.CLOSED:
        return None
    path = Path(str(incident.postmortem.get("path") or final_path(config, incident.id)))
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def incident_page(incident: Incident, config: Config, now: datetime | None = None) -> str:
    """`/incidents/ID`."""
    zone = config.zone
    final = final_document(incident, config)
    draft: Markup | None = None
    draft_error = command = note_command = ""
    if final is None and incident.status != IncidentStatus.CLOSED:
        try:
            text = render_draft(incident, config, "md", overrides=incident.postmortem)
        except DraftError as exc:
            draft_error = str(exc)
        else:
            draft = to_html(text)
            command, note_command = close_command(incident, text)
    return _page(
        "incident.html.j2",
        config,
        title=f"{incident.ref}: {incident.title}",
        incident=incident,
        row=_row(incident, config, now or utcnow()),
        started=local_time(incident.started_at, zone),
        detected=local_time(incident.detected_at, zone),
        delay=duration_words(incident.detected_at - incident.started_at),
        # Opened on a risk (nginx -t fails, the old configuration still serves): no harm
        # is claimed unless a check measured it.
        began="the risk began" if incident.opened_on_risk else "harm began",
        harm_began=(
            (local_time(incident.harm_began, zone) if incident.harm_began else "none measured")
            if incident.opened_on_risk
            else ""
        ),
        resolved=local_time(incident.resolved_at, zone) if incident.resolved_at else "",
        closed=local_time(incident.closed_at, zone) if incident.closed_at else "",
        signals=signal_lines(incident),
        look_next=look_next(incident, config),
        causes=incident.root_causes,
        timeline=[_entry(r, config) for r in timeline_rows(incident)],
        axis=time_axis(incident, zone, now),
        draft=draft,
        draft_error=draft_error,
        final=to_html(final) if final is not None else None,
        close_command=command,
        note_command=note_command,
        is_closed=incident.status == IncidentStatus.CLOSED,
    )


def postmortems_page(store: Store, config: Config, page: int = 1) -> str:
    """`/postmortems`: closed incidents, the most recently closed first."""
    page = max(1, page)
    closed, total = store.page(
        status=str(IncidentStatus.CLOSED),
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        closed_first=True,
    )
    now = utcnow()
    return _page(
        "postmortems.html.j2",
        config,
        title="Postmortems",
        rows=[_row(i, config, now) for i in closed],
        total=total,
        links=_pages(total, page, {}),
        closed={i.id: local_time(i.closed_at, config.zone) if i.closed_at else "-" for i in closed},
    )


def postmortem_page(incident: Incident, config: Config) -> str:
    """`/postmortems/ID`: the final document as `recorder close` wrote it."""
    final = final_document(incident, config)
    if final is None:
        raise NotFound(f"{incident.ref} has no final postmortem (it is {incident.status})")
    return _page(
        "postmortem.html.j2",
        config,
        title=f"Postmortem {incident.ref}",
        incident=incident,
        document=to_html(final),
        closed=local_time(incident.closed_at, config.zone) if incident.closed_at else "-",
    )


@dataclass(frozen=True)
class CheckRow:
    """One check (a probe on a host) on the status page."""

    probe: str
    state: str  # ok, fail, error, or "not run yet"
    since: str
    summary: str
    availability: list[str]  # one figure per window


@dataclass(frozen=True)
class HostBlock:
    service: str
    host: str
    role: str
    state: str  # the worst of its checks
    checks: list[CheckRow]


_WORST = {"fail": 3, "error": 2, "not run yet": 1, "ok": 0}


def _figure(availability: Availability | None) -> str:
    if availability is None or availability.ratio is None:
        return "-"
    return percent(availability.ratio)


def _status_hosts(config: Config) -> list[tuple[str, str]]:
    """(service, host) in page order: each service's hosts (entry points first), then any
    host no service names. Linear in the hosts: a fleet has thousands."""
    placed: dict[str, str] = {}
    for service in config.services:
        for host in config.hosts_of(service):
            if host in config.hosts:
                placed.setdefault(host, service)
    for host in config.hosts:
        if host not in placed:
            placed[host] = config.service_of(host)
    return [(service, host) for host, service in placed.items()]


def status_page(history: History | None, config: Config, page: int = 1) -> str:
    """`/status`: per service and host, every configured check's state, since when, and
    its availability over the windows the history keeps; STATUS_PAGE_HOSTS hosts a page,
    with the hosts not ok now named on every page (they may be on another)."""
    states = history.states() if history else {}
    figures = history.availability() if history else {}
    windows = history.windows() if history else []
    placed = _status_hosts(config)
    last = max(1, -(-len(placed) // STATUS_PAGE_HOSTS))
    page = min(max(1, page), last)
    first = (page - 1) * STATUS_PAGE_HOSTS
    # From the states alone (one entry a check), not by rendering every host.
    troubled = {host for (host, _probe), state in states.items() if state.status != "ok"}
    trouble = [
        (host, f"?page={n // STATUS_PAGE_HOSTS + 1}#host-{host}" if last > 1 else f"#host-{host}")
        for n, (_service, host) in enumerate(placed)
        if host in troubled
    ]
    blocks: list[HostBlock] = []
    for service, host in placed[first : first + STATUS_PAGE_HOSTS]:
        rows = []
        for _check, probe, _cfg in config.checks_for(host):
            state = states.get((host, probe))
            rows.append(
                CheckRow(
                    probe=probe,
                    state=state.status if state else "not run yet",
                    since=local_time(state.since, config.zone) if state else "-",
                    summary=state.summary if state else "",
                    availability=[_figure(figures.get((host, probe), {}).get(w)) for w in windows],
                )
            )
        worst = max((r.state for r in rows), key=lambda s: _WORST.get(s, 1), default="ok")
        blocks.append(HostBlock(service, host, config.hosts[host].role, worst, rows))
    refreshed = history.refreshed if history else None
    return _page(
        "status.html.j2",
        config,
        title="Status",
        blocks=blocks,
        windows=windows,
        refreshed=local_time(refreshed, config.zone) if refreshed else "",
        kept=history is not None,
        total=len(placed),
        first=first + 1,
        links=_pages(len(placed), page, {}, STATUS_PAGE_HOSTS),
        trouble=trouble[:TROUBLE_SHOWN],
        more_trouble=max(0, len(trouble) - TROUBLE_SHOWN),
    )


def login_page(config: Config, next_path: str, failed: bool = False) -> str:
    return _page("login.html.j2", config, title="Sign in", next_path=next_path, failed=failed)


def message_page(config: Config, title: str, text: str) -> str:
    return _page("message.html.j2", config, title=title, text=text)
