"""Webhook alerts are committed in groups (#19.5): the engine applies the notifications
queued together in one store transaction and answers each only after that commit. So an
acknowledged alert is durable (Alertmanager retries only what was not acknowledged), two
senders at once lose and duplicate nothing, and a commit that fails leaves neither the
store nor the book's memory holding any of its alerts."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recorder.incidents import apply_alert_batches
from recorder.store import Store, StoreError
from tests.conftest import free_port
from tests.fixtures import Harness
from tests.test_reliability_alerts import RunningDaemon, _alert, _notification
from tests.test_reliability_daemon import (  # noqa: F401 (fixtures)
    DaemonProcess,
    RecordingSite,
    daemons,
    site,
    webhook_config,
)
from tests.test_signal_rows import alert
from tests.test_store import store_args  # noqa: F401 (the fixture)

TOKEN = "group-commit-token-" + "y" * 16
PER_NOTIFICATION = 10


def refuse_signal(state: Path, key: str) -> None:
    """Make the real store refuse one signal row, as a full disk would refuse a write:
    everything else it still takes."""
    db = sqlite3.connect(state / "recorder.db")
    try:
        db.execute(
            f"CREATE TRIGGER refuse BEFORE INSERT ON signals WHEN NEW.key = '{key}'"
            " BEGIN SELECT RAISE(ABORT, 'the store refused this write'); END"
        )
        db.commit()
    finally:
        db.close()


def stored_signals(state: Path) -> dict[int, set[str]]:
    db = sqlite3.connect(state / "recorder.db")
    try:
        found: dict[int, set[str]] = {}
        for incident_id, key in db.execute("SELECT incident_id, key FROM signals"):
            found.setdefault(incident_id, set()).add(key)
        return found
    finally:
        db.close()


PG_REFUSE = (
    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN"
    " IF NEW.key = '{key}' THEN RAISE EXCEPTION 'the store refused this write'; END IF;"
    " RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER refuse BEFORE INSERT ON signals FOR EACH ROW EXECUTE FUNCTION refuse()",
)


def test_a_failed_group_rolls_back_and_each_batch_is_answered_alone(
    tmp_path: Path,
    store_args: dict[str, Any],  # noqa: F811 (the fixture)
) -> None:
    """Three notifications applied as one group; the store (SQLite, PostgreSQL) refuses
    the second's alert. The group is rolled back and retried one by one: the second fails
    alone, the others are recorded, and memory holds exactly what the store holds."""
    h = Harness(tmp_path / "state")
    if store_args:
        h.book.store = h.store = Store(tmp_path / "state", **store_args)
    assert apply_alert_batches(h.book, h.store, [[alert(1)]]) == [[1]]
    refused = f"alert:{2:016x}"
    if store_args:
        for statement in PG_REFUSE:
            h.store._conn().execute(statement.format(key=refused))
    else:
        refuse_signal(tmp_path / "state", refused)
    outcomes = apply_alert_batches(h.book, h.store, [[alert(3)], [alert(2), alert(4)], [alert(5)]])
    assert outcomes[0] == [1] and outcomes[2] == [1], outcomes
    assert isinstance(outcomes[1], sqlite3.Error | StoreError), outcomes
    memory = {i.id: set(i.signals) for i in h.book.open_incidents()}
    db = h.store._read()
    stored: dict[int, set[str]] = {}
    for incident_id, key in db.execute("SELECT incident_id, key FROM signals").fetchall():
        stored.setdefault(incident_id, set()).add(key)
    assert memory == stored == {1: {f"alert:{n:016x}" for n in (1, 3, 5)}}
    fingerprints = {r[0] for r in db.execute("SELECT fingerprint FROM alerts").fetchall()}
    assert fingerprints == {f"{n:016x}" for n in (1, 3, 5)}
    h.store.close()


def test_an_incident_is_said_opened_only_once_its_group_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in a log (#22): "opened INC-1" was logged when a group opened an incident,
    before its commit; the commit then failed, the store held no INC-1 and the next
    incident the store created was INC-1 again. The opening is said after the commit; a
    rolled-back one is said to be rolled back."""
    h = Harness(tmp_path / "state")
    said: list[str] = []
    h.book.on_opened = lambda incident: said.append(incident.ref)
    refuse_signal(tmp_path / "state", f"alert:{2:016x}")
    caplog.set_level(logging.INFO, logger="recorder")
    # One notification: the first alert opens INC-1, the second is refused; the group
    # (this one batch) rolls back.
    [outcome] = apply_alert_batches(h.book, h.store, [[alert(1), alert(2)]])
    assert isinstance(outcome, sqlite3.Error), outcome
    assert h.store.open_incidents() == [] and h.book.open_incidents() == []
    messages = [r.getMessage() for r in caplog.records]
    assert said == [] and not [m for m in messages if m.startswith("opened")], messages
    assert [m for m in messages if "INC-1" in m and "rolled back" in m], messages
    # Two notifications, the second refused: the group rolls back, each is tried alone;
    # the first commits and opens INC-1, said once, after that commit.
    caplog.clear()
    outcomes = apply_alert_batches(h.book, h.store, [[alert(1)], [alert(2)]])
    assert outcomes[0] == [1] and isinstance(outcomes[1], sqlite3.Error), outcomes
    messages = [r.getMessage() for r in caplog.records]
    assert said == ["INC-1"]
    title = h.store.open_incidents()[0].title
    assert [m for m in messages if m.startswith("opened INC-")] == ["opened INC-1: " + title]
    h.store.close()


def test_a_commit_the_store_refuses_is_an_error_and_memory_matches_the_store(
    tmp_path: Path,
) -> None:
    """Through the real webhook of a running daemon. Before group commit the book kept
    the refused signal in memory ("retrying later") and the webhook answered 200: an
    acknowledged alert the store did not hold, lost at the next restart."""
    server = RunningDaemon(tmp_path)
    try:
        now = datetime.now(UTC)
        status, body = server.webhook(_notification(_alert("first", "firing", now, None)))
        assert status == 200, body
        (incident_id,) = json.loads(body)["incidents"]
        refuse_signal(server.state, "alert:refused")
        status, body = server.webhook(
            _notification(
                _alert("accepted", "firing", now, None), _alert("refused", "firing", now, None)
            )
        )
        assert status == 503 and "cannot record" in body, (status, body)
        memory = {i.id: set(i.signals) for i in server.daemon.book.open_incidents()}
        assert memory == stored_signals(server.state) == {incident_id: {"alert:first"}}
        assert Store(server.state).alert("accepted") is None  # nothing of the batch
        # Alertmanager sends it again once the store takes it: recorded then, once.
        db = sqlite3.connect(server.state / "recorder.db")
        db.execute("DROP TRIGGER refuse")
        db.commit()
        db.close()
        status, body = server.webhook(
            _notification(
                _alert("accepted", "firing", now, None), _alert("refused", "firing", now, None)
            )
        )
        assert status == 200 and json.loads(body)["incidents"] == [incident_id] * 2, body
        keys = {"alert:first", "alert:accepted", "alert:refused"}
        memory = {i.id: set(i.signals) for i in server.daemon.book.open_incidents()}
        assert memory == stored_signals(server.state) == {incident_id: keys}
    finally:
        server.stop()


def test_two_senders_lose_and_duplicate_nothing_across_kill_9(
    tmp_path: Path,
    daemons: list[DaemonProcess],  # noqa: F811 (the fixture)
    site: RecordingSite,  # noqa: F811 (the fixture)
) -> None:
    """Two senders post notifications of new alerts as fast as they are answered; the
    daemon is killed with -9 right after one of them gets a 200. Every alert answered
    200 is in the store, in the one incident, once; the restarted daemon continues it."""
    port = free_port()
    config = webhook_config(tmp_path, port, site.url, TOKEN)
    daemon = DaemonProcess(config, tmp_path / "daemon.log", port)
    daemons.append(daemon)
    daemon.start()
    daemon.wait_healthy()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    acked: list[str] = []
    answered: list[int] = []
    lock = threading.Lock()
    killed = threading.Event()
    starts = datetime.now(UTC)

    def sender(worker: int) -> None:
        for seq in range(10_000):
            fps = [f"s{worker}-{seq}-{i}" for i in range(PER_NOTIFICATION)]
            body = _notification(*[_alert(fp, "firing", starts, None) for fp in fps])
            try:
                status, text = daemon.post("/api/v1/alertmanager", body, headers, timeout=10)
            except OSError:
                return  # killed mid-request: not acknowledged, Alertmanager would retry
            if killed.is_set():
                return
            if status != 200:
                return
            with lock:
                acked.extend(fps)
                answered.extend(json.loads(text)["incidents"])
                if len(acked) >= 40 * PER_NOTIFICATION:
                    # kill -9 now, before this sender (or the other) sends again
                    killed.set()
                    daemon.kill9()
                    return

    senders = [threading.Thread(target=sender, args=(w,)) for w in (1, 2)]
    started = time.monotonic()
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    assert killed.is_set(), f"only {len(acked)} alerts acknowledged: {daemon.tail()}"
    rate = len(acked) / (time.monotonic() - started)
    assert set(answered) == {1}
    db = sqlite3.connect(tmp_path / "state" / "recorder.db")
    try:
        fingerprints = [r[0] for r in db.execute("SELECT fingerprint FROM alerts")]
        signals = [r[0] for r in db.execute("SELECT key FROM signals WHERE incident_id = 1")]
        incidents = db.execute("SELECT count(*) FROM incidents").fetchone()[0]
    finally:
        db.close()
    # Every acknowledged alert survived; an unacknowledged one may be there or not (it
    # was committed, the answer was lost), and Alertmanager's retry finds it known.
    assert set(acked) <= set(fingerprints), sorted(set(acked) - set(fingerprints))[:5]
    assert len(fingerprints) == len(set(fingerprints))
    assert {f"alert:{fp}" for fp in acked} <= set(signals)
    assert len(signals) == len(set(signals)) and incidents == 1
    # The restarted daemon continues the one incident and takes the rest.
    daemon.start()
    daemon.wait_healthy()
    status, text = daemon.post(
        "/api/v1/alertmanager",
        _notification(_alert("after", "firing", starts, None)),
        headers,
    )
    assert status == 200 and json.loads(text)["incidents"] == [1], text
    print(f"{len(acked)} alerts acknowledged by 2 senders at {rate:.0f}/s before kill -9")
