"""Maintenance windows: recurring occurrences, planned incidents that notify nobody, harm
that outlasts its window, alerts during a window, and the CLI."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from probes.base import Fault
from recorder.cli import main
from recorder.config import MaintenanceWindow
from recorder.maintenance import occurrence, recurring
from recorder.show import incident_lines
from recorder.store import Store
from tests.fixtures import MISSING_SYMLINK, T0, Harness
from tests.test_notify import outbox, with_notify

EAT = ZoneInfo("Africa/Nairobi")


def window(start: str, duration: str = "1h") -> MaintenanceWindow:
    return MaintenanceWindow.model_validate(
        {"services": ["web"], "start": start, "duration": duration}
    )


def test_recurring_occurrences_daily_and_weekly() -> None:
    # 2026-11-22 is a Sunday.
    sunday_0230 = datetime(2026, 11, 22, 2, 30, tzinfo=EAT)
    start, end = occurrence(window("Sun 02:00"), EAT, sunday_0230)
    assert (start, end) == (
        datetime(2026, 11, 22, 2, 0, tzinfo=EAT),
        datetime(2026, 11, 22, 3, 0, tzinfo=EAT),
    )
    start, _ = occurrence(window("Sun 02:00"), EAT, datetime(2026, 11, 21, 12, 0, tzinfo=EAT))
    assert start == datetime(2026, 11, 15, 2, 0, tzinfo=EAT)  # the Sunday before
    # Daily, across midnight.
    start, end = occurrence(window("23:30", "90m"), EAT, datetime(2026, 11, 23, 0, 45, tzinfo=EAT))
    assert start == datetime(2026, 11, 22, 23, 30, tzinfo=EAT)
    assert end == datetime(2026, 11, 23, 1, 0, tzinfo=EAT)


def test_recurring_windows_are_on_only_inside(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    config = h.config.model_copy(update={"maintenance": [window("Sun 02:00")]})
    inside = datetime(2026, 11, 22, 2, 59, tzinfo=EAT).astimezone(UTC)
    assert [w.service for w in recurring(config, inside)] == ["web"]
    assert recurring(config, inside + timedelta(minutes=1)) == []


def test_harm_inside_a_window_is_planned_and_notifies_nobody(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.store.add_window("web", None, T0, T0 + timedelta(minutes=5), "kernel upgrade", "cli")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    for _ in range(8):
        h.sweep({})
    inc = h.only_incident()
    assert inc.status == "resolved"
    assert inc.to_json()["planned"] is True
    entry = next(e for e in inc.timeline if e.kind == "maintenance")
    assert "maintenance window #1 (kernel upgrade" in entry.text
    assert outbox(h.store) == []
    # It reads as planned where people look, not only in the JSON.
    assert incident_lines(inc, h.config)[0].startswith("INC-1  resolved (planned)  ")
    listed = h.store.list()[0]
    assert listed.status_label == "resolved (planned)"


def test_harm_outlasting_its_window_becomes_a_normal_incident(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.store.add_window("web", "lb-01", T0, T0 + timedelta(seconds=4), "nginx restart", "cli")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    first = h.only_incident()
    assert first.to_json()["planned"] is True and outbox(h.store) == []
    for _ in range(4):
        h.sweep(MISSING_SYMLINK)
    inc = h.only_incident()
    assert inc.to_json()["planned"] is False
    assert inc.started_at == first.started_at
    assert [e.key for e in inc.timeline if e.kind == "maintenance"] == [
        "maintenance:planned",
        "maintenance:over",
    ]
    assert [r["event"] for r in outbox(h.store)] == ["opened"]
    for _ in range(8):
        h.sweep({})
    assert [r["event"] for r in outbox(h.store)] == ["opened", "resolved"]


def test_a_window_on_another_host_does_not_plan(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.store.add_window("web", "web-02", T0, T0 + timedelta(minutes=5), "disk swap", "cli")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert h.only_incident().to_json()["planned"] is False
    assert [r["event"] for r in outbox(h.store)] == ["opened"]


def test_alerts_during_maintenance_open_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.store.add_window("web", None, T0, T0 + timedelta(minutes=5), "failover drill", "cli")
    landed = h.book.on_alert(
        fingerprint="abc",
        firing=True,
        name="HighErrorRate",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary="5xx above 5%",
        starts_at=T0 + timedelta(seconds=10),
        ends_at=None,
    )
    assert landed is None and h.store.list() == []
    landed = h.book.on_alert(
        fingerprint="def",
        firing=True,
        name="HighErrorRate",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary="5xx above 5%",
        starts_at=T0 + timedelta(minutes=6),
        ends_at=None,
    )
    assert landed is not None


def test_maintenance_cli_start_list_end(tmp_path: Path) -> None:
    config = tmp_path / "recorder.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "timezone": "Africa/Nairobi",
                "hosts": {"lb-01": {"local": {}}, "web-01": {"local": {}}},
                "services": {"web": {"entrypoints": ["lb-01"], "hosts": ["web-01"]}},
                "maintenance": [{"services": ["web"], "start": "Sun 02:00", "duration": "1h"}],
            }
        )
    )
    run = CliRunner().invoke
    args = ["--config", str(config)]
    result = run(main, ["maintenance", "start", "--service", "web", "--host", "web-01",
                        "--for", "30m", "--reason", "kernel upgrade", *args])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("maintenance window 1: web on web-01 until ")
    assert "EAT: kernel upgrade" in result.output
    # The list gives the same end, to the second: a window ending 03:22:58 listed as
    # "03:22" reads as over a minute early.
    until = result.output.split(" until ", 1)[1].split(": ", 1)[0]
    result = run(main, ["maintenance", "list", "--json", *args])
    windows = json.loads(result.output)
    assert [(w["id"], w["host"], w["source"]) for w in windows] == [
        (1, "web-01", "cli"),
        (0, None, "config"),
    ]
    result = run(main, ["maintenance", "list", *args])
    assert "kernel upgrade" in result.output and "config" in result.output
    assert until in result.output, (until, result.output)
    assert run(main, ["maintenance", "end", "1", *args]).exit_code == 0
    again = run(main, ["maintenance", "end", "1", *args])
    assert again.exit_code == 1 and "no maintenance window 1 is on or ahead" in again.output
    bad = run(
        main, ["maintenance", "start", "--service", "api", "--for", "1m", "--reason", "x", *args]
    )
    assert bad.exit_code == 2 and "unknown service 'api' (known: web)" in bad.output
    bad = run(
        main, ["maintenance", "start", "--service", "web", "--for", "soon", "--reason", "x", *args]
    )
    assert bad.exit_code == 2 and "--for: invalid duration" in bad.output
    assert Store(tmp_path / "state").windows() == []


def _unreadable(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def windows(at: datetime | None = None) -> list[dict[str, object]]:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(h.store, "windows", windows)


def test_recurring_windows_apply_while_the_store_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    daily = MaintenanceWindow.model_validate(
        {"services": ["web"], "start": "11:30", "duration": "1h", "timezone": "UTC"}
    )
    h.config = h.book.config = h.config.model_copy(update={"maintenance": [daily]})
    _unreadable(h, monkeypatch)
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert h.only_incident().to_json()["planned"] is True
    assert outbox(h.store) == []


def test_an_unreadable_store_does_not_end_a_one_off_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path)
    with_notify(h, tmp_path, "http://127.0.0.1:9/webhook")
    h.store.add_window("web", None, T0, T0 + timedelta(minutes=5), "kernel upgrade", "cli")
    for _ in range(3):
        h.sweep(MISSING_SYMLINK)
    assert h.only_incident().to_json()["planned"] is True
    with monkeypatch.context() as m:
        _unreadable(h, m)
        for _ in range(3):
            h.sweep(MISSING_SYMLINK)
        assert h.only_incident().to_json()["planned"] is True  # nobody paged on a guess
        assert outbox(h.store) == []
    h.now = T0 + timedelta(minutes=5)
    h.sweep(MISSING_SYMLINK)
    assert h.only_incident().to_json()["planned"] is False
    assert [r["event"] for r in outbox(h.store)] == ["opened"]
