"""Postmortem drafts rendered from recorded incidents, compared with tests/golden/.

Each lab fault has an incident built the way the incident book fills one (impact start,
detection, diagnostics with the checks that passed, root-cause candidates ranked by the
real runbooks, recovery, resolution). The drafts are compared with golden files that a
person has read; `UPDATE_GOLDEN=1 pytest tests/test_draft.py` rewrites them after a
deliberate change (read the diff before committing it).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.base import Fault
from probes.facts import Subjects
from recorder.config import Config
from recorder.model import (
    Affected,
    Cause,
    EntryKind,
    Incident,
    IncidentStatus,
    RuledOut,
    SignalRecord,
    SignalState,
    Step,
    TimelineEntry,
    iso,
    local_time,
)
from recorder.postmortem.draft import (
    DraftError,
    draft_context,
    leading_time,
    render_draft,
    task_context,
)
from recorder.postmortem.lint import PLACEHOLDER_MARK, lint_text
from recorder.ranking import rank_causes
from recorder.runbooks import load_runbooks
from recorder.store import deploy_entry
from tests.fixtures import HOSTS, PORTS, SERVICE, lab_config

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 23, 11, 30, 5, tzinfo=UTC)  # 14:30:05 EAT


# What each probe says when it passes (the checks that rule a path out).
OK_SUMMARY = {
    "http": "200 in 4 ms from http://127.0.0.1:{port}/",
    "sites": "every expected site is enabled (example)",
    "config": "nginx -t: syntax is ok, test is successful",
    "process": "nginx master process running (pid from /run/nginx.pid)",
    "error_rate": "0.0% 5xx of 512 requests in the last 30s (0 of 96 clients)",
    "upstreams": "2 of 2 backends answer (127.0.0.1:18081, 127.0.0.1:18082)",
}


def _probes(host: str) -> list[str]:
    names = ["http", "sites", "config", "process", "error_rate"]
    return [*names, "upstreams"] if host == "lb-01" else names


@dataclass
class Recorded:
    """One lab fault as the recorder saw it."""

    fault: str
    failing: dict[tuple[str, str], tuple[Fault, str]]  # first one detected the incident
    affected: Affected
    harm: timedelta
    detect_after: timedelta = timedelta(seconds=2)
    extra_terms: dict[str, list[str]] = field(default_factory=dict)
    deploy: str | None = None  # version deployed 3 minutes before harm began
    notes: list[tuple[timedelta, str, str]] = field(default_factory=list)  # (after T0, kind, text)
    # What the failing probes named (their Observation.facts.subjects).
    subjects: dict[tuple[str, str], Subjects] = field(default_factory=dict)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds} s"


def build_incident(rec: Recorded, config: Config, incident_id: int = 7) -> Incident:
    """The incident the book leaves behind for `rec`, resolved."""
    zone = config.zone
    detected = T0 + rec.detect_after
    resolved = T0 + rec.harm
    (first_host, first_probe), (_, first_summary) = next(iter(rec.failing.items()))
    entries: list[TimelineEntry] = []

    def add(
        at: datetime, kind: str, text: str, source: str, key: str, step: Step | None = None
    ) -> None:
        entries.append(
            TimelineEntry(at=at, kind=EntryKind(kind), text=text, source=source, key=key, step=step)
        )

    add(T0, "impact-start", f"Harm began: {first_summary}", first_probe, "impact-start")
    add(
        detected,
        "detection",
        f"Incident opened by the recorder, detected by automated monitoring: {first_probe} "
        f"probe on {first_host}: {first_summary} (harm began {local_time(T0, zone)})",
        first_probe,
        "detection",
    )
    if rec.deploy:
        at = T0 - timedelta(minutes=3)
        entries.append(deploy_entry(SERVICE, rec.deploy, at, "lab", 1))
    for (host, probe), (_, summary) in list(rec.failing.items())[1:]:
        add(
            detected + timedelta(milliseconds=400),
            "note",
            f"Also failing: {probe} on {host}: {summary}",
            probe,
            f"join:{probe}@{host}",
            Step.ALSO_FAILING,
        )
    ruled_out: list[RuledOut] = []
    evidence: dict[str, list[str]] = {}
    health: dict[str, list[bool]] = {}
    for n, host in enumerate(HOSTS):
        for m, probe in enumerate(_probes(host)):
            at = detected + timedelta(milliseconds=600 + 40 * n + 5 * m)
            failing = rec.failing.get((host, probe))
            health.setdefault(probe, []).append(failing is None)
            if failing:
                fault, summary = failing
                text = f"Checked {probe} on {host}: {summary}"
                evidence.setdefault(f"{probe}:{fault}", []).append(f"{host}: {summary}")
            else:
                summary = OK_SUMMARY[probe].format(port=PORTS[host])
                text = f"Checked {probe} on {host}: {summary} (ruled out)"
                ruled_out.append(RuledOut(host, probe, summary))
            add(at, "action", text, probe, f"diag:{probe}@{host}")
    for probe, oks in health.items():
        if all(oks):
            evidence[f"{probe}:ok"] = [f"{probe} ok on every host of {SERVICE}"]
    evidence.update(rec.extra_terms)
    if rec.deploy:
        deploy_at = local_time(T0 - timedelta(minutes=3), zone)
        evidence["deploy:recent"] = [f"deploy of {SERVICE} {rec.deploy} at {deploy_at}"]
    candidates = rank_causes(evidence)
    causes = [Cause(str(c.fault), c.confidence, list(c.evidence)) for c in candidates]
    line = ", ".join(f"{c.fault} ({c.confidence:.0%})" for c in causes[:3])
    add(
        detected + timedelta(seconds=1),
        "note",
        f"Root-cause candidates: {line}",
        "recorder",
        f"causes:{line}",
    )
    for at_offset, kind, text in rec.notes:
        add(T0 + at_offset, kind, text, "cli", f"note:{at_offset.total_seconds()}")
    signals: dict[str, SignalRecord] = {}
    for i, ((host, probe), (fault, summary)) in enumerate(rec.failing.items()):
        back = resolved - timedelta(seconds=len(rec.failing) - 1 - i)
        ok = OK_SUMMARY[probe].format(port=PORTS[host])
        text = f"{probe} on {host} healthy again: {ok}"
        add(back, "note", text, probe, f"recovered:{probe}@{host}", Step.RECOVERED)
        signals[f"{probe}@{host}"] = SignalRecord(
            host=host,
            probe=probe,
            fault=str(fault),
            state=SignalState.RECOVERED,
            since=T0 if i == 0 else detected,
            summary=summary,
            flaps=0,
            subjects=rec.subjects.get((host, probe), Subjects()),
            recovered_at=back,
        )
    add(
        resolved,
        "resolution",
        f"Every signal healthy again; incident resolved after {_human(rec.harm)} of harm",
        "recorder",
        f"resolved:{iso(resolved)}",
    )
    top = causes[0] if causes else None
    hosts = list(dict.fromkeys(h for h, _ in rec.failing))
    label = load_runbooks()[Fault(top.fault)].title if top else rec.fault
    incident = Incident(
        id=incident_id,
        status=IncidentStatus.RESOLVED,
        title=f"{SERVICE}: {label} ({', '.join(hosts)})",
        service=SERVICE,
        fault=top.fault if top else rec.fault,
        started_at=T0,
        detected_at=detected,
        hosts=hosts,
        resolved_at=resolved,
        affected=rec.affected,
        root_causes=causes,
        timeline=sorted(entries, key=lambda e: e.at),
        signals=signals,
    )
    for ruled in ruled_out:
        incident.rule_out(ruled)
    return incident


def _clients(bad: int, total: int, host: str = "lb-01") -> Affected:
    zone = lab_config().zone
    window = f"{local_time(T0, zone)} to {local_time(T0 + timedelta(seconds=30), zone)}"
    return Affected(
        round(bad / total, 4),
        "clients-with-5xx",
        f"{bad:,} of {total:,} clients got at least one 5xx, {window}, {host} access log",
        round(bad / total, 4),
    )


REFUSED = "connection refused on http://127.0.0.1:18080/"
TURNED_AWAY = Affected(
    1.0,
    "entrypoint-unreachable",
    f"lb-01 is the only way in for web and answers nothing ({REFUSED}): every client was "
    "turned away",
    1.0,
)
NO_5XX = _clients(0, 188)
EXAMPLE = "/etc/nginx/sites-enabled/example"
UPSTREAM_DOWN = "upstream app: 127.0.0.1:18082 does not answer (50% of weight)"

LAB_FAULTS: dict[str, Recorded] = {
    "missing-symlink": Recorded(
        "missing-symlink",
        {
            ("lb-01", "sites"): (
                Fault.MISSING_SYMLINK,
                "sites-available/example is not linked in sites-enabled",
            ),
            ("lb-01", "http"): (Fault.PORT_CLOSED, REFUSED),
        },
        TURNED_AWAY,
        timedelta(minutes=22, seconds=5),
        subjects={
            ("lb-01", "sites"): Subjects(site=("example",), file=(EXAMPLE,)),
            ("lb-01", "http"): Subjects(url="http://127.0.0.1:18080/"),
        },
    ),
    "dangling-symlink": Recorded(
        "dangling-symlink",
        {
            ("lb-01", "sites"): (
                Fault.DANGLING_SYMLINK,
                "dangling link in sites-enabled: example -> /etc/nginx/sites-available/example",
            ),
            ("lb-01", "config"): (
                Fault.CONFIG_SYNTAX,
                f'nginx -t failed: open() "{EXAMPLE}" failed '
                "(2: No such file or directory) in /etc/nginx/nginx.conf:60",
            ),
        },
        NO_5XX,
        timedelta(minutes=9, seconds=40),
        subjects={
            ("lb-01", "sites"): Subjects(site=("example",), file=(EXAMPLE,)),
            ("lb-01", "config"): Subjects(file=(EXAMPLE,)),
        },
    ),
    "config-syntax": Recorded(
        "config-syntax",
        {
            ("lb-01", "config"): (
                Fault.CONFIG_SYNTAX,
                'nginx -t failed: invalid number of arguments in "proxy_pass" '
                f"directive in {EXAMPLE}:14",
            ),
        },
        NO_5XX,
        timedelta(minutes=6, seconds=12),
        subjects={("lb-01", "config"): Subjects(file=(EXAMPLE,), line=14)},
    ),
    "nginx-down": Recorded(
        "nginx-down",
        {
            ("lb-01", "process"): (
                Fault.NGINX_DOWN,
                "nginx is not running on lb-01 (no master process for /run/nginx.pid)",
            ),
            ("lb-01", "http"): (Fault.PORT_CLOSED, REFUSED),
        },
        TURNED_AWAY,
        timedelta(minutes=4, seconds=31),
    ),
    "upstream-down": Recorded(
        "upstream-down",
        {
            ("lb-01", "upstreams"): (Fault.UPSTREAM_DOWN, UPSTREAM_DOWN),
            ("web-02", "process"): (
                Fault.NGINX_DOWN,
                "nginx is not running on web-02 (no master process for /run/nginx.pid)",
            ),
            ("web-02", "http"): (
                Fault.PORT_CLOSED,
                "connection refused on http://127.0.0.1:18082/",
            ),
        },
        Affected(
            0.5,
            "dead-backend-weight",
            f"dead backends carried 50% of lb-01's upstream weight ({UPSTREAM_DOWN})",
            0.5,
        ),
        timedelta(minutes=12),
        subjects={
            ("lb-01", "upstreams"): Subjects(file=(EXAMPLE,), line=5, backend=("127.0.0.1:18082",)),
            ("web-02", "http"): Subjects(url="http://127.0.0.1:18082/"),
        },
    ),
    "http-5xx": Recorded(
        "http-5xx",
        {
            ("lb-01", "error_rate"): (
                Fault.HTTP_5XX,
                "31.2% 5xx of 1,004 requests in the last 30s (61 of 200 clients)",
            ),
            ("web-01", "error_rate"): (
                Fault.HTTP_5XX,
                "60.4% 5xx of 498 requests in the last 30s (61 of 200 clients)",
            ),
        },
        _clients(61, 200),
        timedelta(minutes=17, seconds=48),
        detect_after=timedelta(seconds=31),
        notes=[
            (
                timedelta(minutes=3),
                "escalation",
                "Paged the platform-team on-call (Amina) through the pager",
            ),
            (
                timedelta(minutes=5),
                "misleading",
                "Suspected database connections and query performance; the database was idle",
            ),
            (
                timedelta(minutes=11),
                "action",
                "Read web-01's app log: every 500 came from the checkout handler",
            ),
        ],
    ),
    "bad-deploy": Recorded(
        "bad-deploy",
        {
            ("lb-01", "error_rate"): (
                Fault.HTTP_5XX,
                "29.8% 5xx of 1,010 requests in the last 30s (59 of 200 clients)",
            ),
            ("web-01", "error_rate"): (
                Fault.HTTP_5XX,
                "59.1% 5xx of 509 requests in the last 30s (59 of 200 clients)",
            ),
        },
        _clients(59, 200),
        timedelta(minutes=8, seconds=3),
        detect_after=timedelta(seconds=30),
        deploy="2.4.1",
    ),
    "slow-responses": Recorded(
        "slow-responses",
        {
            ("web-01", "http"): (
                Fault.SLOW_RESPONSES,
                "slow: 3.02 s for http://127.0.0.1:18081/ (threshold 2 s)",
            ),
            ("lb-01", "http"): (
                Fault.SLOW_RESPONSES,
                "slow: 3.04 s for http://127.0.0.1:18080/ (threshold 2 s)",
            ),
        },
        _clients(0, 190),
        timedelta(minutes=7, seconds=20),
    ),
    "capacity": Recorded(
        "capacity",
        {
            ("lb-01", "error_rate"): (
                Fault.HTTP_5XX,
                "38.5% 5xx (503) of 7,512 requests in the last 30s (143 of 246 clients)",
            ),
        },
        _clients(143, 246),
        timedelta(minutes=2, seconds=30),
        detect_after=timedelta(seconds=12),
        extra_terms={
            "rate:above-baseline": ["lb-01: 250.4 requests/s against a baseline of 19.8/s"]
        },
    ),
}

# Flags a person gives `recorder close` for the missing-symlink incident.
CLOSE_FLAGS: dict[str, Any] = {
    "root_cause": (
        "The 14:29 deploy of the load balancer's configuration rebuilt "
        "/etc/nginx/sites-enabled from a list that no longer named the example site, so the "
        "reload dropped its server block and nothing listened on port 80 any more."
    ),
    "resolution": (
        "Restored the link with ln -s /etc/nginx/sites-available/example "
        "/etc/nginx/sites-enabled/example on lb-01, ran nginx -t and reloaded nginx; "
        "requests were answered again at once."
    ),
    "misleading": [
        "14:36 Suspected a firewall change because the port refused connections and "
        "reviewed iptables rules for 9 minutes"
    ],
    "escalated_to": "14:33 platform-team (paged Amina, who took the incident)",
    "tasks": ["Add the example site to the enabled-sites list of the lb role in Ansible"],
}


def golden_check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run UPDATE_GOLDEN=1 pytest {__file__}"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs from the golden file; UPDATE_GOLDEN=1 rewrites it"


@pytest.fixture(scope="module")
def config() -> Config:
    return lab_config()


# ---- golden files ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(LAB_FAULTS))
def test_draft_matches_golden(fault: str, config: Config) -> None:
    incident = build_incident(LAB_FAULTS[fault], config)
    golden_check(f"{fault}.md", render_draft(incident, config))


def test_final_and_html_match_golden(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["missing-symlink"], config)
    golden_check(
        "missing-symlink.final.md",
        render_draft(incident, config, overrides=CLOSE_FLAGS, final=True),
    )
    golden_check("missing-symlink.html", render_draft(incident, config, "html"))


@pytest.mark.parametrize("fault", sorted(LAB_FAULTS))
def test_top_cause_names_the_lab_fault(fault: str, config: Config) -> None:
    """The drafts are only worth reading when the ranking names what the lab broke."""
    incident = build_incident(LAB_FAULTS[fault], config)
    assert incident.root_causes[0].fault == fault


# ---- what every draft holds --------------------------------------------------------------


SECTION_HEADINGS = (
    "## Issue Summary",
    "## Timeline",
    "## Root Cause and Resolution",
    "## Corrective and Preventative Measures",
)
TIME = r"2026-11-2[34] \d\d:\d\d:\d\d EAT"


@pytest.mark.parametrize("fault", sorted(LAB_FAULTS))
def test_draft_holds_every_section_with_zoned_times(fault: str, config: Config) -> None:
    incident = build_incident(LAB_FAULTS[fault], config)
    text = render_draft(incident, config)
    positions = [text.index(h) for h in SECTION_HEADINGS]
    assert positions == sorted(positions)
    assert re.search(rf"\*\*Duration:\*\* .*from {TIME} to {TIME}\.", text)
    timeline = text[text.index("## Timeline") : text.index("```mermaid")]
    bullets = [line for line in timeline.splitlines() if line.startswith("- ")]
    assert len(bullets) >= 8
    for line in bullets:
        assert re.match(rf"- (?:{TIME}(?: to {TIME})?|\[\[FILL IN: time\]\]) - \S", line), line
    timed = [re.match(rf"- ({TIME})", b) for b in bullets]
    stamps = [m.group(1) for m in timed if m]
    assert stamps == sorted(stamps)  # same day, same format: text order is time order
    # Only what a person knows is left open; lint finds every one of them.
    gaps = lint_text(text, "draft.md")
    assert gaps, "a draft with placeholders must not pass lint"
    assert any("placeholder left" in g.message for g in gaps)
    if not any(e.kind == "escalation" for e in incident.timeline):
        assert "Escalated to platform-team [[FILL IN: who was paged and when]]" in text


def test_missing_symlink_draft_tells_what_was_observed(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["missing-symlink"], config)
    text = render_draft(incident, config)
    assert "from 2026-11-23 14:30:05 EAT to 2026-11-23 14:52:10 EAT" in text
    assert "**Duration:** 22 min 5 s" in text
    assert "100% of users (method `entrypoint-unreachable`" in text
    assert "Requests to the site failed with connection refused" in text  # runbook
    # Checks that passed are in the timeline as paths ruled out, one bullet per host.
    # By probe name, each after " · " (summaries hold "; " themselves).
    ruled = r"- .* - Checked web-01: passed, so ruled out: config \(.*\) · http \(200"
    assert re.search(ruled, text)
    # Tasks are the runbook's, filled in from the evidence and the configuration.
    assert (
        "Restore the link on lb-01: ln -s /etc/nginx/sites-available/example "
        "/etc/nginx/sites-enabled/example" in text
    )
    assert "curl -fsS http://127.0.0.1:18080/" in text
    assert "[[FILL IN: confirm the root cause]]" in text
    assert "Common ones for this fault:" in text


def test_mermaid_block_is_a_valid_gantt(config: Config) -> None:
    for fault, rec in LAB_FAULTS.items():
        text = render_draft(build_incident(rec, config), config)
        block = text.split("```mermaid\n", 1)[1].split("\n```", 1)[0].splitlines()
        assert block[0] == "gantt", fault
        assert block[1].startswith("    title INC-7 web (times in EAT, Africa/Nairobi)")
        assert block[2] == "    dateFormat YYYY-MM-DD HH:mm:ss"
        assert block[3] in ("    axisFormat %H:%M", "    axisFormat %m-%d %H:%M")
        ids: set[str] = set()
        stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
        for line in block[4:]:
            if line.startswith("    section "):
                continue
            task = re.fullmatch(
                rf"    ([A-Za-z0-9 ._/()-]+) :((?:crit|done|active|milestone), )?"
                rf"([a-z0-9]+), ({stamp}), ({stamp}|0m)",
                line,
            )
            assert task, f"{fault}: not a gantt task: {line!r}"
            assert task.group(3) not in ids, f"{fault}: duplicate id in {line!r}"
            ids.add(task.group(3))
            if task.group(5) != "0m":
                assert task.group(4) <= task.group(5), line
        assert {"harm", "detected", "resolved"} <= ids


# ---- safety: what comes from logs and alerts stays text ------------------------------------


def _hostile(config: Config) -> Incident:
    incident = build_incident(LAB_FAULTS["http-5xx"], config)
    incident.timeline.append(
        TimelineEntry(
            at=T0 + timedelta(minutes=1),
            kind="note",
            text="alert Web5xx: <script>alert(1)</script>\n## Timeline\n- 09:00 UTC - forged",
            source="alertmanager",
            key="hostile",
        )
    )
    incident.root_causes[0].evidence.append("lb-01: <img src=x onerror=alert(2)>")
    return incident


def test_html_escapes_markup_from_notes_and_alerts(config: Config) -> None:
    html = render_draft(_hostile(config), config, "html")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<mark>[[FILL IN: confirm the root cause]]</mark>" in html
    assert "<code>nginx -t" in html or "<code>" in html
    for heading in ("Issue Summary", "Timeline", "Root Cause and Resolution"):
        assert f"<h2>{heading}</h2>" in html


def test_markdown_keeps_log_text_on_one_line(config: Config) -> None:
    text = render_draft(_hostile(config), config)
    assert "<script>" not in text
    line = next(ln for ln in text.splitlines() if "alert Web5xx" in ln)
    assert line.startswith("- 2026-11-23 14:31:05 EAT - alert Web5xx: &lt;script>")
    assert "## Timeline - 09:00 UTC - forged" in line
    assert text.count("## Timeline") == 2  # the heading and the quoted text inside a bullet
    assert [ln for ln in text.splitlines() if ln.startswith("## Timeline")] == ["## Timeline"]


# ---- what people add replaces the placeholders ----------------------------------------------


def test_close_flags_replace_every_placeholder(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["missing-symlink"], config)
    text = render_draft(incident, config, overrides=CLOSE_FLAGS, final=True)
    assert PLACEHOLDER_MARK not in text
    assert lint_text(text, "final.md") == []
    assert "- 2026-11-23 14:33:00 EAT - Escalated to platform-team (paged Amina" in text
    assert "- 2026-11-23 14:36:00 EAT - Misleading path: Suspected a firewall change" in text
    assert "- [ ] Add the example site to the enabled-sites list" in text
    assert "Draft kept by the recorder" not in text
    assert "Common ones for this fault" not in text
    html = render_draft(incident, config, "html", overrides=CLOSE_FLAGS, final=True)
    assert lint_text(html, "final.html") == []


def test_notes_people_wrote_fill_the_timeline(config: Config) -> None:
    text = render_draft(build_incident(LAB_FAULTS["http-5xx"], config), config)
    assert "- 2026-11-23 14:33:05 EAT - Escalation: Paged the platform-team on-call" in text
    assert "- 2026-11-23 14:35:05 EAT - Misleading path: Suspected database connections" in text
    assert "- 2026-11-23 14:41:05 EAT - Action: Read web-01's app log" in text
    assert "[[FILL IN: who was paged and when]]" not in text
    assert "what people investigated" not in text


def test_open_incident_without_measure_leaves_end_and_share_to_people(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["nginx-down"], config)
    incident.status, incident.resolved_at = "open", None
    incident.timeline = [e for e in incident.timeline if e.kind != "resolution"]
    incident.affected = Affected()
    text = render_draft(incident, config)
    assert "**Duration:** still open, from 2026-11-23 14:30:05 EAT to [[FILL IN: end time]]" in text
    assert "[[FILL IN: the share of users affected, as a percentage]]" in text
    assert "[[FILL IN: how the incident was resolved]]" in text
    assert "Harm (still open) :crit, harm," in text
    assert "resolved," not in text.split("```mermaid", 1)[1].split("```", 1)[0]


def test_incident_without_candidates_still_renders(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["nginx-down"], config)
    incident.root_causes, incident.fault = [], None
    text = render_draft(incident, config)
    assert "[[FILL IN: the root cause in a sentence or two]]" in text
    assert "[[FILL IN: what users experienced: errors, timeouts, could not log in]]" in text
    assert "[[FILL IN: specific corrective tasks, one per line]]" in text


def test_unknown_format_is_a_clear_error(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["nginx-down"], config)
    with pytest.raises(DraftError, match="unknown format 'pdf'"):
        render_draft(incident, config, "pdf")


# ---- task placeholders from the evidence -----------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("missing-symlink", {"host": "lb-01", "site": "example", "url": "http://127.0.0.1:18080/"}),
        ("dangling-symlink", {"file": "/etc/nginx/sites-enabled/example"}),
        ("config-syntax", {"file": "/etc/nginx/sites-enabled/example", "line": "14"}),
        ("upstream-down", {"backend": "127.0.0.1:18082", "host": "lb-01", "file": EXAMPLE}),
        ("bad-deploy", {"version": "2.4.1", "service": "web"}),
    ],
)
def test_task_context_from_evidence(
    fault: str, expected: dict[str, str | None], config: Config
) -> None:
    incident = build_incident(LAB_FAULTS[fault], config)
    context = task_context(incident, config, incident.root_causes[0])
    assert {k: context.get(k) for k in expected} == expected


def test_missing_values_stay_placeholders(config: Config) -> None:
    incident = build_incident(LAB_FAULTS["http-5xx"], config)
    context = draft_context(incident, config)
    # Nothing observed names the file that holds the log_format: a person must.
    assert any("[[FILL IN: file]]" in task for task in context["tasks"])


def test_task_values_come_from_the_subjects_not_the_prose(config: Config) -> None:
    """A summary that reads like a backend or a file names nothing: the values are the
    probes' typed subjects, the top fault's first."""
    rec = LAB_FAULTS["upstream-down"]
    incident = build_incident(rec, config)
    for key, sig in incident.signals.items():
        incident.signals[key] = replace(
            sig, summary="1 of 2 backends down: 10.9.9.9:80 in /etc/other.conf:3"
        )
    context = task_context(incident, config, incident.root_causes[0])
    assert (context["backend"], context["file"], context["line"]) == (
        "127.0.0.1:18082",
        EXAMPLE,
        "5",
    )
    for key, sig in incident.signals.items():
        # Stored before subjects were kept: a person fills them in.
        incident.signals[key] = replace(sig, subjects=None)
    context = task_context(incident, config, incident.root_causes[0])
    assert "backend" not in context and "file" not in context


def test_leading_time_in_people_text() -> None:
    zone = lab_config().zone
    end = T0 + timedelta(hours=1)
    assert leading_time("14:40 - paged Amina", zone, T0, end) == (
        datetime(2026, 11, 23, 11, 40, tzinfo=UTC),
        "paged Amina",
    )
    assert leading_time("11:45 UTC restarted nginx", zone, T0, end)[0] == datetime(
        2026, 11, 23, 11, 45, tzinfo=UTC
    )
    assert leading_time("14:40 EAT: paged Amina", zone, T0, end)[1] == "paged Amina"
    assert leading_time("14:40 DB team paged", zone, T0, end) == (
        datetime(2026, 11, 23, 11, 40, tzinfo=UTC),
        "DB team paged",
    )
    assert leading_time("platform-team at 14:40", zone, T0, end) == (None, "platform-team at 14:40")
    assert leading_time("25:99 nonsense", zone, T0, end)[0] is None
    # Past midnight: 00:10 belongs to the next day when the incident ran until then.
    late = datetime(2026, 11, 23, 20, 50, tzinfo=UTC)  # 23:50 EAT
    at, _ = leading_time("00:10 rolled back", zone, late, late + timedelta(hours=1))
    assert at == datetime(2026, 11, 23, 21, 10, tzinfo=UTC)


def test_output_formats_are_one_table_the_cli_reads(config: Config) -> None:
    """`recorder draft --format` offers the table's names (#15), and each renders."""
    from recorder.cli import draft_cmd
    from recorder.formats import POSTMORTEM_FORMATS

    (fmt_option,) = [p for p in draft_cmd.params if p.name == "fmt"]
    assert list(fmt_option.type.choices) == list(POSTMORTEM_FORMATS)  # type: ignore[attr-defined]
    incident = build_incident(LAB_FAULTS["missing-symlink"], config)
    for fmt in POSTMORTEM_FORMATS:
        assert "missing-symlink" in render_draft(incident, config, fmt)


def test_deploy_version_is_the_stored_event_not_the_prose(tmp_path: Path) -> None:
    """`recorder event deploy` stores service and version; the draft reads them as stored
    (a version holding a space was cut at it when the timeline's text was parsed)."""
    from tests.test_hostile_values import Case

    case = Case(tmp_path)
    version = "2.4.1 (canary build)"
    result = case.invoke("event", "deploy", "--service", "web", "--version", version)
    assert result.exit_code == 0, result.output
    incident = case.stored()
    assert task_context(incident, case.config, None)["version"] == version
    assert f"Deploy {version} :milestone, deploy1," in render_draft(incident, case.config)
    (entry,) = [e for e in incident.timeline if e.kind == EntryKind.DEPLOY]
    assert entry.deployed is not None and entry.deployed.version == version
