"""Hostile values at the ways in (CLI, webhook) and in the store: times at the ends of
datetime's range, control characters and newlines, Markdown links (#22)."""

from __future__ import annotations

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
