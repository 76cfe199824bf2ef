"""An incident's signals are typed records (recorder.model.SignalRecord) with a
SignalState, not dicts of strings beside the detector's state machine; their rows read and
write exactly as the recorder wrote them before (#15), so no migration is needed."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from probes.base import Fault, Status
from probes.facts import Subjects
from recorder.model import IncidentStatus, SignalRecord, SignalState
from recorder.postmortem.draft import render_draft
from recorder.show import incident_lines
from recorder.store import SCHEMA_VERSION, Store
from tests.fixtures import T0, Harness, store_at

BEFORE = Path(__file__).parent / "stores" / "signal-rows-before-typed.sql"
WRITTEN_AT = 6  # the schema the rows were written at

BROKEN_SITE = {
    ("lb-01", "sites"): (
        Fault.MISSING_SYMLINK,
        "sites-available/default is not linked in sites-enabled",
        {"missing": ["default"], "subjects": Subjects(site=("default",))},
    ),
    ("lb-01", "http"): (Fault.PORT_CLOSED, "connection refused on http://127.0.0.1:18080/", {}),
}
NGINX_DOWN = {("web-02", "process"): (Fault.NGINX_DOWN, "nginx is not running on web-02", {})}


def record_signals(h: Harness) -> None:
    """Every kind of signal row the engine writes: a probe signal that flapped, named what
    it saw and recovered; one that joined and still fires; an alert heard with an end time;
    a check that could not look (a monitoring incident). Both incidents stay open, so a
    restart continues them (tests/stores/signal-rows-before-typed.sql was written from this
    by the code before the records)."""
    h.sweep({})
    h.sweep(BROKEN_SITE)
    h.sweep(BROKEN_SITE)
    h.sweep({})
    h.sweep(BROKEN_SITE)  # fails again within recover_after: a flap
    h.sweep({**BROKEN_SITE, **NGINX_DOWN})  # joins
    h.book.on_alert(
        fingerprint="5f0c2a",
        firing=True,
        name="NginxErrors",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary="5xx above 5% on lb-01",
        starts_at=h.now,
        ends_at=h.now + timedelta(hours=1),
    )
    for _ in range(8):
        h.sweep(NGINX_DOWN)  # lb-01 recovers, web-02 goes on failing
    for _ in range(3):
        h.feed("web-01", "process", Status.ERROR, summary="ssh: connection timed out")
    h.book.tick()


def rows(path: Path) -> list[tuple[Any, ...]]:
    """The signal rows, and the incidents' JSON column (where the named bookkeeping is)."""
    with sqlite3.connect(path) as db:
        signals = db.execute("SELECT id, incident_id, key, body FROM signals ORDER BY id")
        data = db.execute("SELECT id, data FROM incidents ORDER BY id")
        return [*signals.fetchall(), *data.fetchall()]


def old_store(state: Path) -> Path:
    assert WRITTEN_AT <= SCHEMA_VERSION
    return store_at(state, WRITTEN_AT, BEFORE)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_the_records_write_the_rows_main_wrote(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The same scenario through today's engine, on each store engine, writes the very
    signal rows the code before the records wrote (to the byte)."""
    h = Harness(tmp_path)
    if engine == "postgres":
        server = request.getfixturevalue("postgres")
        h.store = Store(tmp_path, url=server.new_database(), password_file=server.password_file)
        h.book.store = h.store
    try:
        record_signals(h)
        written = h.store._read().execute("SELECT key, body FROM signals ORDER BY id").fetchall()
    finally:
        h.store.close()
    before = re.findall(
        r"INSERT INTO \"signals\" VALUES\(\d+,\d+,'([^']*)','(.*)'\);", BEFORE.read_text()
    )
    assert len(before) == 5
    assert [(r[0], r[1]) for r in written] == before


def test_rows_written_before_read_as_records(tmp_path: Path) -> None:
    old_store(tmp_path)
    store = Store(tmp_path)
    outage, gap = store.get(1), store.get(2)
    assert outage is not None and gap is not None
    assert "signals" not in outage.data and "signals" not in gap.data
    sites, http = outage.signals["sites@lb-01"], outage.signals["http@lb-01"]
    assert sites.state is SignalState.RECOVERED and sites.flaps == 1
    assert sites.subjects == Subjects(site=("default",))
    assert sites.since == T0 + timedelta(seconds=1) and sites.recovered_at is not None
    assert http.fault == "port-closed" and http.recovered_at == sites.recovered_at
    nginx = outage.signals["process@web-02"]
    assert nginx.firing and nginx.flaps == 0 and nginx.recovered_at is None
    alert = outage.signals["alert:5f0c2a"]
    assert alert.firing and alert.probe == "alertmanager" and alert.fault == "http-5xx"
    assert alert.heard is not None and alert.ends_at == alert.heard + timedelta(hours=1)
    (unreachable,) = gap.signals.values()
    assert unreachable.firing and unreachable.fault is None
    assert unreachable.flaps is None and unreachable.subjects is None  # keys it never had
    assert all(isinstance(s, SignalRecord) for s in outage.signals.values())
    assert list(outage.signals) == ["http@lb-01", "sites@lb-01", "process@web-02", "alert:5f0c2a"]
    # The bookkeeping in the incident's JSON column, by name.
    assert not outage.planned and outage.opened_fault == "port-closed"
    assert (outage.top_fault, outage.notified_fault) == ("nginx-down", "nginx-down")
    assert outage.top_since == T0 + timedelta(seconds=5) and outage.cause_changes == 1
    assert outage.notified_step == 0.9  # everyone turned away: the highest step
    assert outage.seen_terms["sites:missing-symlink"] == [
        "lb-01: sites-available/default is not linked in sites-enabled"
    ]
    assert gap.cause_changes == 0 and gap.top_fault is None and gap.affected_clients is None


def test_rows_written_before_write_back_byte_for_byte(tmp_path: Path) -> None:
    """Each row's record gives its body back as stored; a restart (which rewrites every
    signal of the open incidents) and a tick leave every row as it was."""
    path = old_store(tmp_path)
    before = rows(path)
    store = Store(tmp_path)
    for _, incident_id, key, body in before[:-2]:
        incident = store.get(incident_id)
        assert incident is not None
        assert json.dumps(incident.signals[key].to_json()) == body
    h = Harness(tmp_path)
    h.now = T0 + timedelta(seconds=20)
    h.restart()
    assert {i.incident.id: sorted(i.dirty) for i in h.book._open.values()} == {
        1: sorted(k for _, i, k, _ in before[:-2] if i == 1),
        2: ["process@web-01"],
    }
    h.book.flush()
    assert all(not i.dirty for i in h.book._open.values())  # written
    assert rows(path) == before


def test_a_restart_over_rows_written_before_goes_on_from_them(tmp_path: Path) -> None:
    """The firing checks seed the detector (the alert does not: it is no check),
    recovering it leaves the incident open for the alert, and the alert's resolution
    resolves it at the last recovery; the gap ends when the host can be checked again."""
    old_store(tmp_path)
    h = Harness(tmp_path)
    h.now = T0 + timedelta(seconds=20)
    h.store = Store(tmp_path)
    h.book.store = h.store
    seeded = h.book.restore()
    assert [(host, probe, fault) for host, probe, _, fault in seeded] == [
        ("web-02", "process", Fault.NGINX_DOWN),
        ("web-01", "process", None),
    ]
    h.restart()
    for _ in range(8):
        h.sweep({})
    outage = h.store.get(1)
    assert outage is not None and outage.status is IncidentStatus.OPEN
    assert not outage.signals["process@web-02"].firing
    assert outage.signals["alert:5f0c2a"].firing
    gap = h.store.get(2)
    assert gap is not None and gap.status is IncidentStatus.RESOLVED
    h.book.on_alert(
        fingerprint="5f0c2a",
        firing=False,
        name="NginxErrors",
        service="web",
        host="lb-01",
        fault=Fault.HTTP_5XX,
        summary="",
        starts_at=T0,
        ends_at=h.now,
    )
    outage = h.store.get(1)
    assert outage is not None and outage.status is IncidentStatus.RESOLVED
    assert outage.resolved_at == h.now
    assert incident_lines(outage, h.config)[0]
    assert "[[FILL IN: site]]" not in render_draft(outage, h.config)


def test_a_row_from_another_version_reads_and_keeps_what_it_does_not_know() -> None:
    """Missing keys stay missing; a key this version does not know is written back (after
    the known ones); a state it does not know reads as firing, so the check's next healthy
    result ends it rather than the incident resolving on a guess, and is written back as
    it was while it stays firing (a restart of an older recorder must not rewrite a newer
    one's row); so are keys of `subjects` it does not know; a time that does not parse
    reads as absent; a body that is not an object is no signal."""
    old = {
        "host": "web-01",
        "probe": "process",
        "fault": "nginx-down",
        "state": "silenced",
        "since": "not a time",
        "summary": "nginx is not running",
        "subjects": {
            "site": ["example"],
            "file": [],
            "line": None,
            "backend": [],
            "url": None,
            "zone": "perip",
        },  # fmt: skip
        "later": {"from": "a newer recorder"},
    }
    record = SignalRecord.from_json(old)
    assert record is not None and record.state is SignalState.FIRING and record.since is None
    assert record.flaps is None and record.heard is None
    assert record.subjects is not None and record.subjects.site == ("example",)
    assert record.to_json() == {**old, "since": None}
    assert list(record.to_json())[-1] == "later"
    # Once this version ends it, the row says so in words every version knows.
    at = datetime(2026, 12, 6, 4, 30, tzinfo=UTC)
    assert record.recovered(at).to_json()["state"] == "recovered"
    assert SignalRecord.from_json(["not", "an", "object"]) is None
    assert SignalRecord.from_json(None) is None
