"""The store: real SQLite in a temp state dir."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recorder.events import record_deploy
from recorder.model import Affected, Incident, Task, TimelineEntry
from recorder.store import SCHEMA_VERSION, Store, StoreError

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def new_incident(**kw: object) -> Incident:
    base: dict[str, object] = dict(
        id=0,
        status="open",
        title="web: site down",
        service="web",
        fault="missing-symlink",
        started_at=T0,
        detected_at=T0 + timedelta(seconds=2),
        hosts=["lb-01"],
    )
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def test_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store(state)
    store.create_incident(new_incident())
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in os.listdir(state):
        mode = stat.S_IMODE(os.stat(state / name).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def test_round_trip_and_schema_version(tmp_path: Path) -> None:
    store = Store(tmp_path)
    inc = new_incident(affected=Affected(0.3, "clients-with-5xx", "30 of 100 clients"))
    inc.timeline = [TimelineEntry(T0, "impact-start", "harm began", "http", key="impact-start")]
    store.create_incident(inc)
    again = Store(tmp_path).get(inc.id)
    assert again is not None
    assert again.affected.ratio == 0.3
    assert [e.text for e in again.timeline] == ["harm began"]
    assert again.started_at == T0
    db = sqlite3.connect(tmp_path / "recorder.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_timeline_entries_are_idempotent_by_key(tmp_path: Path) -> None:
    store = Store(tmp_path)
    inc = store.create_incident(new_incident())
    entry = TimelineEntry(T0, "detection", "detected", "http", key="detection")
    for _ in range(3):
        store.save_detection(inc, [entry])
    got = store.get(inc.id)
    assert got is not None
    assert [e.key for e in got.timeline] == ["detection"]


def test_daemon_never_writes_over_a_closed_incident(tmp_path: Path) -> None:
    store = Store(tmp_path)
    inc = store.create_incident(new_incident())
    store.close_incident(inc.id, {"root_cause": "x"}, [Task("ln -s ...")], T0 + timedelta(hours=1))
    inc.status = "resolved"
    assert store.save_detection(inc) is False
    got = store.get(inc.id)
    assert got is not None and got.status == "closed"
    assert got.tasks[0].text == "ln -s ..."


def test_deploy_lands_in_open_incident_timeline(tmp_path: Path) -> None:
    store = Store(tmp_path)
    inc = store.create_incident(new_incident())
    other = store.create_incident(new_incident(service="api"))
    record_deploy(tmp_path, "web", "1.4.2", source="ci", at=T0 + timedelta(minutes=1))
    got, untouched = store.get(inc.id), store.get(other.id)
    assert got is not None and untouched is not None
    assert any(e.kind == "deploy" and "1.4.2" in e.text for e in got.timeline)
    assert not untouched.timeline
    deploys = store.deploys("web", T0, T0 + timedelta(minutes=5))
    assert [d["version"] for d in deploys] == ["1.4.2"]


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    """The daemon and several CLI processes write at once (threads with their own
    connections stand in for them here)."""
    store = Store(tmp_path)
    inc = store.create_incident(new_incident())

    def writer(n: int) -> None:
        mine = Store(tmp_path)
        for i in range(50):
            mine.add_entries(inc.id, [TimelineEntry(T0, "note", f"{n}-{i}", "cli", key=f"{n}-{i}")])
        mine.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get(inc.id)
    assert got is not None and len(got.timeline) == 200
    assert store.integrity_ok()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "recorder.db")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path)


def test_unwritable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(blocker / "state")
