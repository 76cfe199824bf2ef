"""Hostile values at the ways in (CLI, webhook) and in the store: times at the ends of
datetime's range, control characters and newlines, Markdown links (#22)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from recorder.cli import main
from recorder.config import parse_config
from recorder.model import Incident, TimelineEntry, local_time
from recorder.postmortem.draft import render_draft
from recorder.show import incident_lines
from recorder.store import Store

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Case:
    """A real config (zone east of UTC) and a real store holding one open incident."""

    def __init__(self, root: Path, zone: str = "Africa/Nairobi") -> None:
        self.state = root / "state"
        self.config_path = root / "recorder.yml"
        self.config_path.write_text(
            f"timezone: {zone}\nstate_dir: {self.state}\n"
            "services: {web: {entrypoints: [lb-01]}}\n"
            "hosts:\n  lb-01: {local: {}}\n"
        )
        self.config = parse_config(
            {
                "timezone": zone,
                "state_dir": str(self.state),
                "services": {"web": {"entrypoints": ["lb-01"]}},
                "hosts": {"lb-01": {"local": {}}},
            }
        )
        store = Store(self.state)
        store.create_incident(incident(T0))
        store.close()

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["--config", str(self.config_path), *args])

    def stored(self) -> Incident:
        store = Store(self.state)
        try:
            found = store.get(1)
            assert found is not None
            return found
        finally:
            store.close()


def incident(start: datetime, **kw: object) -> Incident:
    fields: dict[str, object] = {
        "id": 0,
        "status": "open",
        "title": "web: site down",
        "service": "web",
        "fault": "missing-symlink",
        "started_at": start,
        "detected_at": start,
        "hosts": ["lb-01"],
        "timeline": [TimelineEntry(start, "impact-start", "harm began", "http", key="impact")],
    }
    fields.update(kw)
    return Incident(**fields)  # type: ignore[arg-type]


@pytest.fixture
def case(tmp_path: Path) -> Case:
    return Case(tmp_path)


def _clean(result: Result) -> None:
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    assert escaped is None, f"{type(escaped).__name__}: {escaped}"
    assert "Traceback" not in result.output


# ---- #22.6 times out of range ----------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    ["9999-12-31T23:59:59+00:00", "0001-01-01 00:00", "1969-12-31T23:59:59Z", "2200-01-01T00:00Z"],
)
def test_note_at_out_of_range_is_refused_and_nothing_stored(case: Case, at: str) -> None:
    before = len(case.stored().timeline)
    result = case.invoke("note", "1", "checked", "--at", at)
    _clean(result)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("recorder: --at: ") and "out of range" in result.output
    assert len(case.stored().timeline) == before


@pytest.mark.parametrize(
    "when",
    [
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1, 1, 1, 0, 0, tzinfo=UTC),
    ],
    ids=["year-9999", "year-1"],
)
@pytest.mark.parametrize("zone", ["Africa/Nairobi", "America/New_York"])
def test_readers_survive_a_stored_time_out_of_range(
    tmp_path: Path, when: datetime, zone: str
) -> None:
    # Written before the ways in were checked: list, show, draft (md and html) and the
    # JSON still work, showing the time in UTC where the zone cannot hold it.
    case = Case(tmp_path, zone)
    store = Store(case.state)
    store.create_incident(
        incident(
            when,
            status="resolved",  # Case's incident is the service's open one
            resolved_at=when,
            timeline=[
                TimelineEntry(when, "impact-start", "harm began", "http", key="impact"),
                TimelineEntry(when, "note", "14:05 restarted nginx", "cli", key="n"),
            ],
        )
    )
    store.close()
    for args in (
        ("incidents", "list"),
        ("incidents", "list", "--json"),
        ("incidents", "show", "2"),
        ("incidents", "show", "2", "--json"),
        ("draft", "2"),
        ("draft", "2", "--format", "html"),
    ):
        result = case.invoke(*args)
        _clean(result)
        assert result.exit_code == 0, (args, result.output)
    shown = local_time(when, ZoneInfo(zone))
    assert shown.startswith(f"{when.year:04d}-{when.month:02d}-{when.day:02d}")
    assert "Traceback" not in "\n".join(incident_lines(case.stored(), case.config))
    for fmt in ("md", "html"):
        render_draft(incident(when + timedelta(0), id=2), case.config, fmt=fmt)


# ---- #22.8, #22.9 newlines and control characters ----------------------------------------

FORGED = "checked\n2026-11-23 12:40:00 EAT - [resolution] all fixed (cli)"
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b31m"


def _timeline_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("  2026-")]


def test_a_newline_in_a_note_cannot_forge_a_timeline_line(case: Case) -> None:
    before = _timeline_lines(case.invoke("incidents", "show", "1").output)
    result = case.invoke("note", "1", FORGED)
    _clean(result)
    assert result.exit_code == 0, result.output
    texts = [e.text for e in case.stored().timeline if e.source == "cli"]
    assert texts == ["checked 2026-11-23 12:40:00 EAT - [resolution] all fixed (cli)"]
    shown = case.invoke("incidents", "show", "1").output
    assert len(_timeline_lines(shown)) == len(before) + 1
    forged = [line for line in shown.splitlines() if "[resolution]" in line]
    assert len(forged) == 1 and " - [note] checked 2026-" in forged[0], forged


def test_terminal_escapes_in_a_note_are_refused(case: Case) -> None:
    before = len(case.stored().timeline)
    result = case.invoke("note", "1", f"look {ESCAPES}")
    _clean(result)
    assert result.exit_code == 2
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "control characters" in result.output
    assert len(case.stored().timeline) == before


@pytest.mark.parametrize("version", ["1.2\n2026-11-23 12:40 - [resolution] x", "1.2\x1b[2J", " "])
def test_a_deploy_version_with_a_newline_or_escape_is_refused(case: Case, version: str) -> None:
    result = case.invoke("event", "deploy", "--service", "web", "--version", version)
    _clean(result)
    assert result.exit_code == 2, result.output
    assert "\x1b" not in result.output
    assert [e for e in case.stored().timeline if e.kind == "deploy"] == []


def test_probe_output_escapes_what_the_probe_read(tmp_path: Path) -> None:
    # A file name in sites-enabled is chosen by whoever can write there; `recorder probe`
    # printed it raw (a newline a forged row, ESC a rewritten screen).
    enabled = tmp_path / "etc/nginx/sites-enabled"
    enabled.mkdir(parents=True)
    name = f"x\nlb-01  http  ok  all fine{ESCAPES}"
    (enabled / name).symlink_to("/nowhere/site")
    config = tmp_path / "recorder.yml"
    config.write_text(
        f"timezone: UTC\nstate_dir: {tmp_path / 'state'}\n"
        f"hosts:\n  lb-01: {{local: {{prefix: {tmp_path}}}}}\n"
        "checks:\n  - {hosts: [lb-01], probes: {sites: {}}}\n"
    )
    result = CliRunner().invoke(main, ["--config", str(config), "probe"])
    _clean(result)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2, lines  # the header and the one observation
    assert "\\x0a" in lines[1] and "\\x1b" in lines[1]
    assert not any(c in result.output for c in "\x1b\x07\x9b")
    as_json = CliRunner().invoke(main, ["--config", str(config), "probe", "--json"])
    assert not any(c in as_json.output for c in "\x1b\x07\x9b")
    assert "\\u009b" in as_json.output


def test_alert_names_and_summaries_lose_their_control_characters() -> None:
    from recorder.alertmanager import parse_payload, to_alert

    body = {
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": f"Down{ESCAPES}", "instance": "lb-01"},
                "annotations": {"summary": f"bad\n[resolution]{ESCAPES}"},
                "startsAt": "2026-11-23T12:00:00Z",
            }
        ],
    }
    import json

    (raw,) = parse_payload(json.dumps(body).encode()).alerts
    cfg = parse_config({"hosts": {"lb-01": {"local": {}}}})
    alert = to_alert(raw, cfg)
    for text in (alert.name, alert.summary):
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)


def test_the_markdown_draft_holds_no_control_characters(case: Case) -> None:
    store = Store(case.state)
    store.create_incident(
        incident(
            T0,
            status="resolved",  # Case's incident is the service's open one
            resolved_at=T0,
            title=f"web: {ESCAPES} down",
            timeline=[
                TimelineEntry(T0, "impact-start", "harm began", "http", key="impact"),
                TimelineEntry(T0, "note", f"seen {ESCAPES}\x00\x7f", "alertmanager", key="n"),
            ],
        )
    )
    store.close()
    for fmt in ("md", "html"):
        text = render_draft(case_incident(case, 2), case.config, fmt=fmt)
        bad = sorted(
            {c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F}
        )
        assert bad == [], (fmt, bad)


def case_incident(case: Case, incident_id: int) -> Incident:
    store = Store(case.state)
    try:
        found = store.get(incident_id)
        assert found is not None
        return found
    finally:
        store.close()


# ---- #22.10 links and images from untrusted text ------------------------------------------

LINKS = (
    "![x](http://outside.example/pixel.png) [click](javascript:alert(1)) "
    r"[t\](javascript:alert(2)) [ref][r] [r]: http://outside.example/ <http://outside.example/>"
)
# A `]` that closes link text: not escaped (preceded by an even number of backslashes)
# and followed by `(`, `[` or `:`; or an autolink's `<`.
_LINK = re.compile(r"(?<!\\)(?:\\\\)*\](?=[(\[:])|<(?=https?:|javascript:)")


def test_markdown_links_and_images_from_alerts_and_notes_render_as_text(case: Case) -> None:
    def draft(text: str, title: str) -> str:
        store = Store(case.state)
        incident_id = store.create_incident(
            incident(
                T0,
                status="resolved",  # Case's incident is the service's open one
                resolved_at=T0,
                title=title,
                timeline=[
                    TimelineEntry(T0, "impact-start", "harm began", "http", key="impact"),
                    TimelineEntry(T0, "detection", text, "alertmanager", key="a"),
                    TimelineEntry(T0, "note", text, "cli", key="n"),
                ],
            )
        ).id
        store.close()
        return render_draft(case_incident(case, incident_id), case.config, fmt="md")

    benign = draft("a plain note", "web: site down")
    hostile = draft(LINKS, f"web: {LINKS}")
    assert "outside.example" in hostile  # the text is kept, as text
    assert len(_LINK.findall(hostile)) == len(_LINK.findall(benign)), _LINK.findall(hostile)


@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize("at", ["0001-01-01 00:00", "9999-12-31T23:59:59+00:00"])
def test_logscan_times_out_of_range_are_refused(tmp_path: Path, option: str, at: str) -> None:
    # `--since '0001-01-01 00:00'` in a zone east of UTC ended in OverflowError.
    log = tmp_path / "access.log"
    log.write_text('203.0.113.7 - - [23/Nov/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"\n')
    result = CliRunner().invoke(
        main, ["logscan", str(log), option, at, "--timezone", "Africa/Nairobi"]
    )
    _clean(result)
    assert result.exit_code == 2, result.output
    assert f"{option}: " in result.output and "out of range" in result.output
