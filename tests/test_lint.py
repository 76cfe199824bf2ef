"""`recorder lint`: hand-written postmortems in many layouts, each paired with the exact gaps
lint must report (`tests/postmortems/NAME.expected`, one `Section: message` a line; empty
for a complete one), then the rules one by one, and robustness against what is not a
postmortem at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.postmortem import SECTIONS, Gap, fill_in, lint_bytes, lint_file, lint_text, to_json
from recorder.postmortem.lint import MAX_BYTES, MAX_LINES, is_specific_task
from tests.fixtures import parse_source

FIXTURES = Path(__file__).parent / "postmortems"
DOCUMENTS = sorted(p for p in FIXTURES.iterdir() if p.suffix != ".expected")


def expected(path: Path) -> list[str]:
    return path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


def found(gaps: list[Gap]) -> list[str]:
    return [f"{g.section}: {g.message}" for g in gaps]


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_hand_written_postmortems(path: Path) -> None:
    assert found(lint_file(path)) == expected(path)


def test_the_fixtures_cover_layouts_and_ways_of_being_incomplete() -> None:
    assert all(p.with_suffix(".expected").is_file() for p in DOCUMENTS)
    assert len(DOCUMENTS) >= 8
    complete = {p.suffix for p in DOCUMENTS if not expected(p)}
    assert complete == {".txt", ".md", ".html"}  # a clean one in every layout
    incomplete = [p for p in DOCUMENTS if expected(p)]
    assert len(incomplete) >= 5
    assert {p.suffix for p in incomplete} == {".txt", ".md", ".html"}
    # Every section has some fixture that finds a gap in it.
    sections = {line.split(":", 1)[0] for p in incomplete for line in expected(p)}
    assert sections >= set(SECTIONS)


def test_gap_formats() -> None:
    gaps = lint_file(FIXTURES / "no-timezone-no-percentage.md")
    assert str(gaps[1]) == (
        f"{FIXTURES / 'no-timezone-no-percentage.md'}: Issue summary: impact: no percentage "
        'of users affected (e.g. "30% of users")'
    )
    assert to_json(gaps[1:2]) == [
        {
            "file": str(FIXTURES / "no-timezone-no-percentage.md"),
            "section": "Issue summary",
            "message": 'impact: no percentage of users affected (e.g. "30% of users")',
        }
    ]
    assert str(Gap("Timeline", "x")) == "<text>: Timeline: x"


# ---- one complete document, rewritten one way at a time ---------------------------------

SUMMARY = """\
From 2023-10-20 20:00 EAT to 2023-10-20 20:45 EAT every request to the web site failed
with connection refused: 100% of users were affected. The root cause was a missing
symlink for the site in /etc/nginx/sites-enabled on lb-01."""
TIMELINE = [
    "20:00 EAT - A configuration run emptied sites-enabled on lb-01 and reloaded nginx.",
    "20:03 EAT - A monitoring alert from the http probe paged the on-call engineer.",
    "20:10 EAT - Assumed a firewall change and reviewed iptables; a misleading path.",
    "20:20 EAT - Escalated to the platform team.",
    "20:40 EAT - Recreated the link with ln -s and reloaded nginx; site restored.",
]
ROOT = """\
A refactored configuration-management role emptied /etc/nginx/sites-enabled before
linking the sites listed in a new variable, which was empty for lb-01, so the reload
dropped the only server block listening on port 80.

We recreated the link with ln -s, checked the configuration with nginx -t and reloaded
nginx, after which lb-01 answered on port 80 again and the probe recovered."""
BROAD = "Treat the enabled sites as monitored state, and test the site after every change."
TASKS = [
    "Add monitoring of sites-enabled symlinks on every web server.",
    "Add a post-deploy `nginx -t && curl -fsS http://lb-01/` check.",
]


def markdown(
    summary: str = SUMMARY,
    timeline: list[str] = TIMELINE,
    root: str = ROOT,
    broad: str = BROAD,
    tasks: list[str] = TASKS,
    headings: tuple[str, str, str, str] = (
        "## Issue summary",
        "## Timeline",
        "## Root cause and resolution",
        "## Corrective and preventative measures",
    ),
) -> str:
    parts = [
        "# Postmortem: lb-01 outage",
        headings[0],
        summary,
        headings[1],
        "\n".join(f"- {t}" for t in timeline),
        headings[2],
        root,
        headings[3],
        broad,
        "\n".join(f"- {t}" for t in tasks),
    ]
    return "\n\n".join(parts) + "\n"


def test_the_base_document_is_complete() -> None:
    assert lint_text(markdown()) == []


HEADINGS = [
    ("## Issue summary", "## Timeline", "## Root cause and resolution", "## Action items"),
    ("# Summary", "## Time line", "## Root Cause & Resolution", "## Preventive measures"),
    (
        "Issue Summary:",
        "Timeline:",
        "Root Cause and Resolution:",
        "Corrective and Preventative Measures:",
    ),
    (
        "ISSUE SUMMARY",
        "TIME LINE",
        "ROOT CAUSE AND RESOLUTION",
        "CORRECTIVE AND PREVENTIVE MEASURES",
    ),
    ("**Issue Summary**", "**Timeline**", "**Root cause and resolution**", "**Follow-ups**"),
    ("1. Issue summary", "2. Timeline", "3. Root cause and resolution", "4. Corrective measures"),
    (
        "Overview\n========",
        "Timeline\n--------",
        "Root cause and resolution\n---",
        "Next steps\n---",
    ),
    ("### Executive Summary", "### Chronology", "### Root Cause and Resolution", "### Tasks"),
    (
        "## Issue Summary:",
        "## Timeline (all times EAT)",
        "## Root cause and fix",
        "## Action Items",
    ),
]


@pytest.mark.parametrize("headings", HEADINGS, ids=[h[0].strip("#* ") for h in HEADINGS])
def test_headings_are_read_by_meaning(headings: tuple[str, str, str, str]) -> None:
    assert lint_text(markdown(headings=headings)) == []


def test_html_headings_and_lists() -> None:
    items = "".join(f"<li>{t}</li>" for t in TIMELINE)
    tasks = "".join(f"<li>{t.replace('`', '')}</li>" for t in TASKS)
    html = (
        "<html><body><h1>Postmortem</h1>"
        f"<h2>Issue Summary</h2><p>{SUMMARY}</p>"
        f"<h2>Timeline</h2><ul>{items}</ul>"
        f"<h3>Root Cause</h3><p>{ROOT.split(chr(10) * 2)[0]}</p>"
        f"<h3>Resolution</h3><p>{ROOT.split(chr(10) * 2)[1]}</p>"
        f"<h2>Corrective &amp; Preventative Measures</h2><p>{BROAD}</p><ol>{tasks}</ol>"
        "</body></html>"
    )
    assert lint_text(html) == []


def test_separate_root_cause_and_resolution_sections() -> None:
    cause, fix = ROOT.split("\n\n")
    doc = markdown(root=f"{cause}\n\n## Resolution\n\n{fix}")
    assert lint_text(doc) == []
    assert found(lint_text(markdown(root=cause))) == [
        "Root cause and resolution: no explanation of how the issue was fixed"
    ]


def test_root_cause_label_inside_the_summary_stays_in_the_summary() -> None:
    summary = SUMMARY.replace("The root cause was", "Users saw errors.\n\nRoot cause:\nIt was")
    assert "Root cause:\n" in summary
    assert lint_text(markdown(summary=summary)) == []


# ---- the summary ----------------------------------------------------------------------

ZONE = (
    "Issue summary: duration: the start and end times have no time zone "
    '(e.g. "20:00 EAT", "14:30 (UTC)")'
)
NO_TIMES = (
    'Issue summary: duration: no start and end time (e.g. "2023-10-20 20:00 EAT to 20:45 EAT")'
)
NO_DATE = 'Issue summary: duration: the start and end times have no date (e.g. "2023-10-20")'
PERCENT = 'Issue summary: impact: no percentage of users affected (e.g. "30% of users")'
REST = "Every user got errors: 30% of users were affected. It was caused by a missing link."

DURATIONS = [
    ("From 2023-10-20 20:00 EAT to 2023-10-20 20:45 EAT.", []),
    ("On 2024-03-05 from 14:30 (UTC) to 15:15 (UTC).", []),
    ("March 5, 2024, 10:45 AM PST - 11:30 AM PST.", []),
    ("2024-01-09T21:10:00+03:00 to 2024-01-09T21:40:00+03:00.", []),
    ("2024-01-09T18:10:00Z to 2024-01-09T18:40:00Z.", []),
    ("On 2023-10-20 from 20:00 to 20:45 EAT.", []),
    ("On 2024-03-05 from 10:45 AM PST to 11:30 AM.", []),
    ("On 20/10/2023 between 20:00 and 20:45 (Africa/Nairobi).", []),
    ("12 November 2023, 09:10-09:52 East Africa Time.", []),
    ("All times are in UTC. On 2024-03-05 from 14:30 to 15:15.", []),
    ("On 2024-03-05 from 14:30 UTC+3 to 15:15 UTC+3.", []),
    ("On 2024-03-05 from 2:45 to 3:30.", [ZONE]),
    ("On 2024-03-05 from 10:00-11:00.", [ZONE]),
    ("From 20:00 EAT to 20:45 EAT.", [NO_DATE]),
    ("On 2023-10-20 at 20:00 EAT, for 45 minutes.", [NO_TIMES]),
    ("It lasted 45 minutes.", [NO_TIMES]),
]


@pytest.mark.parametrize(("duration", "gaps"), DURATIONS, ids=[d[0] for d in DURATIONS])
def test_duration_needs_start_end_date_and_zone(duration: str, gaps: list[str]) -> None:
    assert found(lint_text(markdown(summary=f"{duration} {REST}"))) == gaps


IMPACTS = [
    ("30% of users got errors.", []),
    ("30 percent of users got errors.", []),
    ("12.5 % of requests failed.", []),
    ("4,812 of 10,025 clients got at least one 5xx.", []),
    ("Many users got errors.", [PERCENT]),
    (
        "30% were affected.",
        [
            "Issue summary: impact: does not say what users experienced (errors, timeouts, "
            "could not log in)"
        ],
    ),
]


@pytest.mark.parametrize(("impact", "gaps"), IMPACTS, ids=[i[0] for i in IMPACTS])
def test_impact_needs_a_number_and_what_users_saw(impact: str, gaps: list[str]) -> None:
    summary = f"From 2023-10-20 20:00 EAT to 20:45 EAT. {impact} It was caused by a bad link."
    assert found(lint_text(markdown(summary=summary))) == gaps


def test_summary_needs_a_root_cause() -> None:
    summary = "From 2023-10-20 20:00 EAT to 20:45 EAT. 30% of users got errors."
    assert found(lint_text(markdown(summary=summary))) == [
        "Issue summary: no root cause (a sentence or two on what caused the outage)"
    ]


# ---- the timeline ---------------------------------------------------------------------

MISLEADING = (
    "Timeline: no misleading investigation or debugging path (what was suspected or "
    "assumed and turned out wrong)"
)
# Which entry of TIMELINE to rewrite, what to write instead, and the one gap that leaves.
COVERAGE = [
    (
        1,
        "20:03 EAT - The on-call engineer looked at lb-01.",
        "Timeline: no entry says when the issue was detected",
    ),
    (2, "20:10 EAT - Checked iptables on lb-01.", MISLEADING),
    (
        3,
        "20:20 EAT - Kept working on it alone.",
        "Timeline: no escalation (to which team or people the incident was escalated)",
    ),
    (
        4,
        "20:40 EAT - Ran ln -s for the site on lb-01.",
        "Timeline: no entry says how the incident was resolved",
    ),
]


@pytest.mark.parametrize(("index", "text", "gap"), COVERAGE, ids=[c[2][10:40] for c in COVERAGE])
def test_timeline_must_cover_each_part_of_the_story(index: int, text: str, gap: str) -> None:
    timeline = [text if i == index else t for i, t in enumerate(TIMELINE)]
    assert found(lint_text(markdown(timeline=timeline))) == [gap]


def test_how_it_was_detected() -> None:
    timeline = [*TIMELINE]
    timeline[1] = "20:03 EAT - The issue was detected."
    assert found(lint_text(markdown(timeline=timeline))) == [
        "Timeline: no entry says how it was detected (monitoring alert, an engineer noticed, "
        "a customer complained)"
    ]


def test_entries_need_times_and_order() -> None:
    timeline = [*TIMELINE[:2], "Looked at the dashboards.", TIMELINE[3], TIMELINE[2], *TIMELINE[4:]]
    assert found(lint_text(markdown(timeline=timeline))) == [
        'Timeline: 1 entry has no time: "Looked at the dashboards."',
        'Timeline: entries out of order: "20:10 EAT - Assumed a firewall change a…" comes '
        'after "20:20 EAT - Escalated to the platform t…"',
    ]


def test_a_timeline_across_midnight_is_in_order() -> None:
    hours = ["23:40", "23:52", "00:05", "00:20", "01:10"]
    timeline = [f"{h} UTC{t[9:]}" for h, t in zip(hours, TIMELINE, strict=True)]
    assert lint_text(markdown(timeline=timeline)) == []


def test_dated_entries_are_ordered_by_date() -> None:
    days = ["2023-10-20 23:50", "2023-10-21 00:03", "2023-10-21 00:10", "2023-10-21 00:20"]
    timeline = [f"{d} EAT{t[9:]}" for d, t in zip(days, TIMELINE, strict=False)]
    timeline.append(f"2023-10-20 23:55 EAT{TIMELINE[4][9:]}")
    assert found(lint_text(markdown(timeline=timeline))) == [
        'Timeline: entries out of order: "2023-10-20 23:55 EAT - Recreated the li…" '
        'comes after "2023-10-21 00:20 EAT - Escalated to the…"'
    ]


BULLETS = ["- ", "* ", "+ ", "• ", "o ", "1. ", "1) ", "\uf0b7 ", "- [ ] "]


@pytest.mark.parametrize("bullet", BULLETS)
def test_bullet_styles(bullet: str) -> None:
    doc = markdown().replace("\n- 20:", f"\n{bullet}20:")
    assert doc.count(f"\n{bullet}20:") == len(TIMELINE)
    assert lint_text(doc) == []


def test_timeline_as_a_table_or_as_time_led_lines() -> None:
    rows = "| Time | What happened |\n|---|---|\n" + "\n".join(
        f"| {t[:9]} | {t[12:]} |" for t in TIMELINE
    )
    assert lint_text(markdown().replace("\n".join(f"- {t}" for t in TIMELINE), rows)) == []
    lines = "\n".join(TIMELINE)
    assert lint_text(markdown().replace("\n".join(f"- {t}" for t in TIMELINE), lines)) == []


def test_sub_bullets_and_wrapped_lines_belong_to_their_entry() -> None:
    timeline = "\n".join(
        [
            "- 20:00 EAT - A configuration run emptied sites-enabled on lb-01.",
            "- 20:03 EAT - A monitoring alert paged the on-call engineer, who",
            "  checked the backends first:",
            "  - web-01 answered 200",
            "  - web-02 answered 200",
            *(f"- {t}" for t in TIMELINE[2:]),
        ]
    )
    doc = markdown().replace("\n".join(f"- {t}" for t in TIMELINE), timeline)
    assert lint_text(doc) == []


def test_prose_is_not_a_timeline() -> None:
    prose = "At 20:00 the site failed, at 20:03 an alert paged us, and at 20:40 we fixed it."
    doc = markdown().replace("\n".join(f"- {t}" for t in TIMELINE), prose)
    assert found(lint_text(doc)) == [
        'Timeline: no bullet points with times (write "- 20:05 EAT - what happened")'
    ]


# ---- root cause and resolution ---------------------------------------------------------


def test_root_cause_and_resolution_must_be_explained() -> None:
    short = "A link was missing.\n\nWe recreated the link."
    assert found(lint_text(markdown(root=short))) == [
        "Root cause and resolution: the root cause is not explained in detail (4 words; "
        "at least 20)",
        "Root cause and resolution: the resolution is not explained in detail (4 words; "
        "at least 20)",
    ]


def test_labelled_root_cause_and_fix_in_one_paragraph() -> None:
    cause, fix = ROOT.split("\n\n")
    root = f"**Root cause:** {cause}\n**Fix:** {fix}"
    assert lint_text(markdown(root=root)) == []


# ---- corrective measures ---------------------------------------------------------------

SPECIFIC = [
    "Add monitoring of sites-enabled symlinks on every web server",
    "Patch the Nginx server config on web-01",
    "Add a post-deploy `nginx -t && curl -fsS http://localhost/` check",
    "Alert when the 5xx share is above 5% for 2 minutes",
    "Set max_fails=3 fail_timeout=10s in /etc/nginx/conf.d/upstream.conf",
    "Add a canary stage to the deploy pipeline",
    "Run a load test at twice the observed peak before campaigns",
]
VAGUE = [
    "Improve monitoring",
    "Be more careful",
    "Fix nginx",
    "Improve monitoring and alerting across the whole infrastructure",
    "Make sure this never happens again",
    "Add more tests",
    "Review the deployment process",
    "Nginx config on web-01",  # names a host but asks nothing
]


@pytest.mark.parametrize("task", SPECIFIC)
def test_specific_tasks(task: str) -> None:
    assert is_specific_task(task)


@pytest.mark.parametrize("task", VAGUE)
def test_vague_tasks(task: str) -> None:
    assert not is_specific_task(task)


def test_measures_need_broad_improvements_and_specific_tasks() -> None:
    assert found(lint_text(markdown(tasks=["Improve monitoring", "Be more careful"]))) == [
        "Corrective and preventative measures: no specific task; too vague to act on: "
        '"Improve monitoring", "Be more careful"'
    ]
    assert found(lint_text(markdown(tasks=[]))) == [
        "Corrective and preventative measures: no list of tasks (bullet points such as "
        '"add monitoring of sites-enabled symlinks")'
    ]
    assert found(lint_text(markdown(broad=""))) == [
        "Corrective and preventative measures: no broad improvements (what can be improved "
        "or fixed, broadly)"
    ]
    # Broad items may be bullets too, under their own label.
    broad = "Improvements:\n\n- Add monitoring of sites-enabled symlinks\n\nTasks:"
    assert lint_text(markdown(broad=broad)) == []


def test_a_vague_item_listed_as_a_task_is_a_gap() -> None:
    """Under a Tasks label every item is a promise: "improve monitoring" beside a specific
    task passed before (#16); among prose it stays a broad improvement."""
    tasks = [*TASKS, "Improve monitoring"]
    assert found(lint_text(markdown(broad=BROAD + "\n\nTasks:", tasks=tasks))) == [
        'Corrective and preventative measures: task too vague to act on: "Improve '
        'monitoring" (name an action and what it acts on: a host, file, command, tool or '
        "number)"
    ]
    assert lint_text(markdown(tasks=tasks)) == []


# ---- placeholders -------------------------------------------------------------------------


def test_placeholders_are_gaps_where_they_stand() -> None:
    doc = (
        f"Owner: {fill_in('owner')}\n\n"
        + markdown(summary=SUMMARY + f" {fill_in('who noticed first')}")
        + f"- Write the runbook for {fill_in('site')}\n"
    )
    assert found(lint_text(doc)) == [
        "Document: placeholder left: [[FILL IN: owner]]",
        "Issue summary: placeholder left: [[FILL IN: who noticed first]]",
        "Corrective and preventative measures: placeholder left: [[FILL IN: site]]",
    ]


def test_placeholders_do_not_count_as_content() -> None:
    doc = markdown(root=fill_in("root cause") + "\n\n" + fill_in("how it was fixed"))
    assert found(lint_text(doc)) == [
        "Root cause and resolution: no explanation of what caused the issue",
        "Root cause and resolution: no explanation of how the issue was fixed",
        "Root cause and resolution: placeholder left: [[FILL IN: root cause]]",
        "Root cause and resolution: placeholder left: [[FILL IN: how it was fixed]]",
    ]


def test_a_placeholder_time_is_reported_once() -> None:
    timeline = [*TIMELINE]
    timeline[3] = f"{fill_in('time')} - Escalated to the platform team."
    assert found(lint_text(markdown(timeline=timeline))) == [
        "Timeline: placeholder left: [[FILL IN: time]]"
    ]


# ---- what is not a postmortem -----------------------------------------------------------


def test_empty_and_binary_documents(tmp_path: Path) -> None:
    assert found(lint_text("")) == ["Document: empty document"]
    assert found(lint_text(" \n\t\n")) == ["Document: empty document"]
    png = tmp_path / "shot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert [str(g) for g in lint_file(png)] == [f"{png}: Document: not a text document"]
    assert found(lint_text("abc\x00def")) == ["Document: not a text document"]


def test_unreadable_files(tmp_path: Path) -> None:
    assert found(lint_file(tmp_path / "missing.md")) == [
        "Document: cannot read: No such file or directory"
    ]
    assert found(lint_file(tmp_path)) == ["Document: cannot read: is a directory"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_encodings(tmp_path: Path, encoding: str) -> None:
    doc = markdown(summary=SUMMARY + " The café’s menu page — “down”.")
    path = tmp_path / f"pm-{encoding}.md"
    path.write_bytes(doc.replace("\n", "\r\n").encode(encoding))
    assert lint_file(path) == []


def test_enormous_documents_are_read_to_a_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_bytes(markdown().encode() + b"x" * (MAX_BYTES + 10))
    gaps = found(lint_file(big))
    assert gaps == ["Document: longer than 1 MB or 20,000 lines; only the start was checked"]
    long = markdown() + "more\n" * MAX_LINES
    assert found(lint_text(long))[0] == gaps[0]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_gives_gaps_not_errors(text: str) -> None:
    for gap in lint_text(text):
        assert gap.section in (*SECTIONS, "Document") and gap.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_gaps_not_errors(data: bytes) -> None:
    for gap in lint_bytes(data):
        assert gap.section in (*SECTIONS, "Document") and gap.message


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "## Timeline",
                "Issue Summary:",
                "- 20:00 EAT - x",
                "<h2>Root cause</h2>",
                "| a |",
                "```",
                "---",
                "====",
                "**Tasks**",
                "o 10:45 AM PST - y",
                fill_in("z"),
                "",
            ]
        ),
        max_size=30,
    )
)
def test_any_mix_of_structure_gives_gaps_not_errors(lines: list[str]) -> None:
    lint_text("\n".join(lines))


# ---- the document reader, apart from the rules (#15) --------------------------------------

READER_CASES = {
    "markdown": (
        "# Issue Summary\nThe site was down.\n\n## Timeline\n- 10:00 EAT detected\n\n"
        "## Root cause and resolution\nA link was removed.\n\n## Action items\n- add a check\n"
    ),
    "html": (
        "<html><body><h1>Issue Summary</h1><p>The site was down.</p><h2>Timeline</h2>"
        "<ul><li>10:00 EAT detected</li></ul><h2>Root cause and resolution</h2>"
        "<p>A link was removed.</p><h2>Action items</h2><ul><li>add a check</li></ul>"
        "</body></html>"
    ),
    "plain": (
        "Issue Summary:\nThe site was down.\n\nTIME LINE\no 10:00 EAT detected\n\n"
        "Root Cause and Resolution:\nA link was removed.\n\nAction Items\no add a check\n"
    ),
}


@pytest.mark.parametrize("kind", sorted(READER_CASES))
def test_the_document_reader_finds_the_same_sections_in_any_format(kind: str) -> None:
    from recorder.postmortem.document import MEASURES, ROOT, SUMMARY, TIMELINE, read_document

    document = read_document(READER_CASES[kind])
    assert list(document.sections) == [SUMMARY, TIMELINE, ROOT, MEASURES]
    content = {
        name: [(line.kind, line.text) for line in section.content()]
        for name, section in document.sections.items()
    }
    assert content == {
        SUMMARY: [("text", "The site was down.")],
        TIMELINE: [("bullet", "10:00 EAT detected")],
        ROOT: [("text", "A link was removed.")],
        MEASURES: [("bullet", "add a check")],
    }
    assert not document.truncated


def test_the_rules_module_does_not_parse_documents() -> None:
    # lint.py holds the rules; reading HTML, Markdown and plain text is document.py's.
    import ast

    import recorder.postmortem.lint as lint

    tree = parse_source(Path(lint.__file__))
    imported = {
        alias.name if isinstance(node, ast.Import) else node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "html.parser" not in imported
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    assert not defined & {"_parse_lines", "_split_sections", "_html_to_text", "_classify"}
