"""The store: real SQLite in a temp state dir, and the same tests on a real PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recorder.events import record_deploy
from recorder.model import Affected, Incident, Notice, Task, TimelineEntry
from recorder.store import SCHEMA_VERSION, IncidentTaken, Store, StoreError

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


Opener = Callable[[], Store]


def in_threads(work: Callable[[int], None], count: int) -> None:
    """work(0) .. work(count - 1) at once, each in a thread of its own."""
    threads = [threading.Thread(target=work, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture(params=["sqlite", "postgres"])
def store_args(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Store(tmp_path, **store_args): SQLite in tmp_path, or an empty PostgreSQL database
    (the state dir then holds no store)."""
    if request.param == "sqlite":
        return {}
    server = request.getfixturevalue("postgres")
    return {"url": server.new_database(), "password_file": str(server.password_file)}


@pytest.fixture
def open_store(tmp_path: Path, store_args: dict[str, Any]) -> Iterator[Opener]:
    """Opens stores on this test's engine; closes them (this thread's connections) after."""
    opened: list[Store] = []

    def opener() -> Store:
        opened.append(Store(tmp_path, **store_args))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


def test_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = Store(state)
    store.create_incident(new_incident())
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o700
    for name in os.listdir(state):
        mode = stat.S_IMODE(os.stat(state / name).st_mode)
        assert mode & 0o077 == 0, f"{name} is {oct(mode)}"


def test_round_trip_and_schema_version(
    tmp_path: Path, open_store: Opener, store_args: dict[str, Any]
) -> None:
    store = open_store()
    inc = new_incident(affected=Affected(0.3, "clients-with-5xx", "30 of 100 clients"))
    inc.timeline = [TimelineEntry(T0, "impact-start", "harm began", "http", key="impact-start")]
    store.create_incident(inc)
    again_store = open_store()
    again = again_store.get(inc.id)
    assert again is not None
    assert again.affected.ratio == 0.3
    assert [e.text for e in again.timeline] == ["harm began"]
    assert again.started_at == T0
    assert again_store.schema_version() == SCHEMA_VERSION
    if store_args:
        assert not (tmp_path / "recorder.db").exists()
        return
    db = sqlite3.connect(tmp_path / "recorder.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_timeline_entries_are_idempotent_by_key(open_store: Opener) -> None:
    store = open_store()
    inc = store.create_incident(new_incident())
    entry = TimelineEntry(T0, "detection", "detected", "http", key="detection")
    for _ in range(3):
        store.save_detection(inc, [entry])
    got = store.get(inc.id)
    assert got is not None
    assert [e.key for e in got.timeline] == ["detection"]


def test_daemon_never_writes_over_a_closed_incident(open_store: Opener) -> None:
    store = open_store()
    inc = store.create_incident(new_incident())
    store.close_incident(inc.id, {"root_cause": "x"}, [Task("ln -s ...")], T0 + timedelta(hours=1))
    inc.status = "resolved"
    assert store.save_detection(inc) is False
    got = store.get(inc.id)
    assert got is not None and got.status == "closed"
    assert got.tasks[0].text == "ln -s ..."


def test_deploy_lands_in_open_incident_timeline(
    tmp_path: Path, open_store: Opener, store_args: dict[str, Any]
) -> None:
    store = open_store()
    inc = store.create_incident(new_incident())
    other = store.create_incident(new_incident(service="api"))
    record_deploy(tmp_path, "web", "1.4.2", source="ci", at=T0 + timedelta(minutes=1), **store_args)
    got, untouched = store.get(inc.id), store.get(other.id)
    assert got is not None and untouched is not None
    assert any(e.kind == "deploy" and "1.4.2" in e.text for e in got.timeline)
    assert not untouched.timeline
    deploys = store.deploys("web", T0, T0 + timedelta(minutes=5))
    assert [d["version"] for d in deploys] == ["1.4.2"]


def test_concurrent_writers_lose_nothing(open_store: Opener) -> None:
    """The daemon and several CLI processes write at once (threads with their own
    connections stand in for them here)."""
    store = open_store()
    inc = store.create_incident(new_incident())

    def writer(n: int) -> None:
        mine = open_store()
        for i in range(50):
            mine.add_entries(inc.id, [TimelineEntry(T0, "note", f"{n}-{i}", "cli", key=f"{n}-{i}")])
        mine.close()

    in_threads(writer, 4)
    got = store.get(inc.id)
    assert got is not None and len(got.timeline) == 200
    assert store.integrity_ok()


def test_newer_schema_is_refused(
    tmp_path: Path, open_store: Opener, store_args: dict[str, Any]
) -> None:
    open_store().close()
    if store_args:
        import psycopg

        password = Path(store_args["password_file"]).read_text().strip()
        with psycopg.connect(store_args["url"], password=password, autocommit=True) as pg:
            pg.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    else:
        db = sqlite3.connect(tmp_path / "recorder.db")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.commit()
        db.close()
    with pytest.raises(StoreError, match="newer"):
        open_store()


def test_unwritable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(blocker / "state")


def test_every_query_runs_on_the_engine(open_store: Opener) -> None:
    """The queries whose SQL differs per engine (aggregates over times and JSON) and the
    idempotent writes (ON CONFLICT) give the same answers on both."""
    store = open_store()
    first = store.create_incident(new_incident(data={"opened_fault": "bad-deploy"}))
    second = store.create_incident(
        new_incident(service="api", fault=None, detected_at=T0 + timedelta(seconds=4.5))
    )
    assert store.detection_delays() == (2, 6.5)
    assert store.counts_by_fault() == {"bad-deploy": 1, "unknown": 1}
    assert store.counts() == {"open": 2}
    assert store.distinct("service") == ["api", "web"]
    page, total = store.page(limit=1)
    assert total == 2 and [i.id for i in page] == [second.id]
    assert [i.id for i in store.list(after=first.id)] == [second.id]
    for _ in range(2):
        store.put_alert("fp1", first.id, "firing", "SiteDown", T0, None)
    store.put_alert("fp1", first.id, "resolved", "SiteDown", T0, T0 + timedelta(minutes=1))
    alert = store.alert("fp1")
    assert alert is not None and alert["status"] == "resolved"
    notice = Notice(event="trigger", key="trigger", at=T0, text="down", receivers=["chat"])
    assert store.add_notices(first, [notice]) == 1
    assert store.add_notices(first, [notice]) == 0  # the same delivery is queued once
    due = store.next_delivery("chat", T0 + timedelta(seconds=1))
    assert due is not None and due["event"] == "trigger"
    store.delivery_done(due["id"], "sent", T0, None)
    assert store.outbox_depth() == 0
    window = store.add_window("web", None, T0, T0 + timedelta(hours=1), "upgrade", "cli")
    assert [w["id"] for w in store.windows(T0 + timedelta(minutes=5))] == [window]
    assert store.end_window(window, T0 + timedelta(minutes=10))
    assert store.resolved_between("web", T0, T0 + timedelta(hours=1)) == 0
    store.check_writable()
    assert store.integrity_ok()


def test_lease_is_held_by_one_holder_until_it_expires(open_store: Opener) -> None:
    store = open_store()
    assert store.lease() is None
    assert store.take_lease("a", 10, T0)
    assert not store.take_lease("b", 10, T0 + timedelta(seconds=5))  # a's runs
    assert store.take_lease("a", 10, T0 + timedelta(seconds=5))  # renewed to T0+15
    assert not store.take_lease("b", 10, T0 + timedelta(seconds=14))
    assert store.take_lease("b", 10, T0 + timedelta(seconds=15))  # expired: taken over
    assert not store.take_lease("a", 10, T0 + timedelta(seconds=16))  # a lost it
    assert store.lease() == ("b", T0 + timedelta(seconds=25))
    store.release_lease("a", T0 + timedelta(seconds=17))  # not a's: nothing changes
    assert store.lease() == ("b", T0 + timedelta(seconds=25))
    store.release_lease("b", T0 + timedelta(seconds=17))
    assert store.take_lease("a", 10, T0 + timedelta(seconds=17))


def test_one_open_incident_per_book_key(open_store: Opener) -> None:
    """Migration 6: even two recorders that both believe they lead cannot open two
    records of one outage; the second create writes nothing and says IncidentTaken."""
    store, other = open_store(), open_store()
    first = store.create_incident(new_incident())
    with pytest.raises(IncidentTaken):
        other.create_incident(new_incident(title="web: also down"))
    # Another service, and a monitoring gap on each host, are books of their own.
    other.create_incident(new_incident(service="api"))
    gap = new_incident(severity="monitoring", hosts=["lb-01"])
    other.create_incident(gap)
    other.create_incident(new_incident(severity="monitoring", hosts=["lb-02"]))
    with pytest.raises(IncidentTaken):
        other.create_incident(new_incident(severity="monitoring", hosts=["lb-01"]))
    assert len(store.open_incidents()) == 4
    # Resolved, the key is free again: the next outage opens a new incident.
    first.status, first.resolved_at = "resolved", T0 + timedelta(minutes=5)  # type: ignore[assignment]
    assert store.save_detection(first)
    assert other.create_incident(new_incident()).id not in (0, first.id)


def test_an_expired_lease_goes_to_exactly_one_of_many(open_store: Opener) -> None:
    open_store().take_lease("old", 1, T0)
    won: list[str] = []
    start = threading.Barrier(6)

    def contender(n: int) -> None:
        mine = open_store()
        start.wait()
        if mine.take_lease(f"r{n}", 10, T0 + timedelta(seconds=5)):
            won.append(f"r{n}")
        mine.close()

    in_threads(contender, 6)
    assert len(won) == 1, won
    lease = open_store().lease()
    assert lease is not None and lease[0] == won[0]
