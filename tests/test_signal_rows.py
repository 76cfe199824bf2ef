"""Alerts and an incident's signals are rows (#22.2): applying one alert writes what it
changed, not the incident's whole state, however many signals the incident holds; and
incidents stored before the signals became rows read, show and draft the same.

The work is counted, not timed: the bytes the process hands to write(2) (the store's WAL
frames), from /proc/self/io."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from probes.base import Fault
from recorder.alertmanager import Alert
from recorder.incidents import IncidentBook, apply_alerts
from recorder.model import Incident
from recorder.postmortem.draft import render_draft
from recorder.show import incident_lines
from recorder.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.fixtures import MISSING_SYMLINK, T0, Harness, lab_config, store_at

IO = Path("/proc/self/io")
BEFORE = Path(__file__).parent / "stores" / "before-signal-rows.sql"


def written() -> int:
    """Bytes this process passed to write(2) and pwrite(2) so far."""
    for line in IO.read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def alert(n: int) -> Alert:
    return Alert(
        fingerprint=f"{n:016x}",
        firing=True,
        name="BenchHighErrorRate",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary=f"5xx above 5% on backend pool {n}",
        starts_at=T0 + timedelta(milliseconds=n),
        ends_at=None,
    )


def resolved(n: int, at: datetime) -> Alert:
    return replace(alert(n), firing=False, ends_at=at)


def record(h: Harness) -> None:
    """An outage opened by probes that three alerts join; one alert resolves, a probe
    flaps, a second probe joins, the probes recover. Two alerts still fire at the end, so
    the incident is open. tests/stores/before-signal-rows.sql was written from this by
    the recorder before migration 4 (main at 9c27539)."""
    h.sweep({})
    h.sweep(MISSING_SYMLINK)
    h.sweep(MISSING_SYMLINK)
    assert apply_alerts(h.book, h.store, [alert(n) for n in range(3)]) == [1, 1, 1]
    h.sweep({})
    h.sweep(MISSING_SYMLINK)  # fails again within recover_after: a flap
    apply_alerts(h.book, h.store, [resolved(0, h.now)])
    failing = dict(MISSING_SYMLINK)
    failing[("web-02", "process")] = (Fault.NGINX_DOWN, "nginx is not running on web-02", {})
    h.sweep(failing)  # joins
    for _ in range(8):
        h.sweep({})


def finish(h: Harness) -> Incident:
    """The last two alerts resolve: the incident resolves."""
    h.restart()
    apply_alerts(h.book, h.store, [resolved(1, h.now), resolved(2, h.now)])
    h.sweep({})
    return h.only_incident()


def shown(incident: Incident, h: Harness) -> tuple[object, ...]:
    return (
        [(e.at, e.kind, e.step, e.key, e.text) for e in incident.timeline],
        incident.data,
        incident.status,
        incident.root_causes,
        incident.affected,
        incident_lines(incident, h.config),
        render_draft(incident, h.config),
    )


def test_incidents_stored_before_the_migration_read_show_and_draft_the_same(
    tmp_path: Path,
) -> None:
    assert SCHEMA_VERSION >= 4 and len(MIGRATIONS) == SCHEMA_VERSION  # BEFORE is at 3
    now = Harness(tmp_path / "now")
    record(now)
    new = now.only_incident()
    path = store_at(tmp_path / "old" / "state", 3, BEFORE)
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM incidents WHERE id=1").fetchone()
        assert '"signals"' in data and '"steps"' in data  # the old shape, in the blob
    old = Harness(tmp_path / "old" / "state")  # opening the store migrates it
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        (data,) = db.execute("SELECT data FROM incidents WHERE id=1").fetchone()
        assert '"signals"' not in data and '"steps"' not in data
        rows = db.execute("SELECT key FROM signals WHERE incident_id=1 ORDER BY id").fetchall()
        assert db.execute("SELECT count(*) FROM timeline WHERE step IS NOT NULL").fetchone()[0]
    migrated = old.only_incident()
    assert [r[0] for r in rows] == list(new.signals) == list(migrated.signals)
    assert len(rows) == 6  # three probe signals and three alerts
    assert shown(migrated, old) == shown(new, now)
    # The daemon continues the migrated open incident as it does its own.
    old.now = now.now
    assert shown(finish(old), old) == shown(finish(now), now)


@pytest.mark.skipif(not IO.exists(), reason="needs Linux /proc/self/io")
def test_bytes_written_per_alert_stay_flat_as_the_incident_grows(tmp_path: Path) -> None:
    config = lab_config(tmp_path / "state", prefix="/")
    store = Store(config.state_path)
    now = [T0]
    book = IncidentBook(config, store, clock=lambda: now[0])

    def apply(first: int, count: int) -> float:
        """Bytes written per alert over `count` new alerts, one webhook each."""
        before = written()
        for n in range(first, first + count):
            now[0] = T0 + timedelta(seconds=n / 100)
            assert apply_alerts(book, store, [alert(n)]) == [1]
        return (written() - before) / count

    apply(0, 50)  # the incident opens; the tables and the WAL take their shape
    early = apply(50, 100)
    apply(150, 1850)
    late = apply(2000, 100)  # 2,000 signals in the incident by now
    incident = store.get(1)
    assert incident is not None and len(incident.signals) == 2100
    # The cause's evidence names five of the alerts and counts the rest.
    top = incident.root_causes[0]
    assert top.fault == "http-5xx" and "and 2,095 more firing alerts" in top.evidence
    assert len(top.evidence) < 10
    # One alert adds a signal, a timeline entry and an alert row, and updates the
    # incident's fixed-size fields: the same work at 2,000 signals as at 50. The whole
    # incident rewritten per alert grew it about 40 times over (issue 22: 3.5 s, 7.6 s,
    # then over 10 s for three batches of 1,000).
    print(f"bytes per alert: {early:.0f} at 50-150 signals, {late:.0f} at 2,000-2,100")
    assert late < 1.5 * early, (early, late)
