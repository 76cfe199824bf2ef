"""Probe history for the status page: each check's state now and since when, and how
often it was healthy, compact enough to keep for a fleet.

Every observation counts into two buckets of its check (host and probe): the hour and the
UTC day it fell in, as counts of ok, failing and could-not-look samples. Hour rows are
kept two days (the 24 h availability reads them), day rows `web.history_days` (30 by
default; the 7 d and 30 d figures read them). A check sampled every 10 s costs 48 hour
rows and one day row a day, whatever the interval (BENCHMARKS.md gives the bytes).

Availability is ok / (ok + failing): a sample where the recorder could not look (`error`)
is neither, and is shown beside it. The figures are computed from whole buckets, so a
"24 h" window starts at the top of an hour and "7 d" at midnight UTC.

Kept in its own SQLite file (`state_dir/history.db`), apart from the incidents: it is
written every second at fleet size and pruned continuously, and losing it loses no
incident. The engine thread writes (add, then flush once a tick, in one transaction);
the HTTP threads read the availability computed at the last refresh, never the tables.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from probes.base import Observation, Status
from recorder.model import iso, parse_iso, utcnow
from recorder.store import ensure_private_dir

log = logging.getLogger("recorder.history")

HOUR, DAY = 3600, 86400
HOURS_KEPT = 2 * DAY
WINDOWS = (("24 h", timedelta(hours=24)), ("7 d", timedelta(days=7)), ("30 d", timedelta(days=30)))
REFRESH = 60.0  # seconds between availability computations
FILE = "history.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    host TEXT NOT NULL, probe TEXT NOT NULL, width INTEGER NOT NULL, bucket INTEGER NOT NULL,
    ok INTEGER NOT NULL DEFAULT 0, fail INTEGER NOT NULL DEFAULT 0,
    error INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (width, bucket, host, probe)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checks (
    host TEXT NOT NULL, probe TEXT NOT NULL, status TEXT NOT NULL, since TEXT NOT NULL,
    last TEXT NOT NULL, summary TEXT NOT NULL,
    PRIMARY KEY (host, probe)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class CheckState:
    host: str
    probe: str
    status: str  # ok, fail, error
    since: datetime  # when it last changed to this status
    last: datetime  # the latest sample
    summary: str


@dataclass(frozen=True)
class Availability:
    """One check over one window: the share of samples that were ok (None: none judged)."""

    ratio: float | None
    judged: int  # ok + failing samples
    unknown: int  # samples where the recorder could not look


class History:
    def __init__(self, state_dir: Path, days: int = 30) -> None:
        self.path = state_dir / FILE
        self.days = days
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._counts: dict[tuple[str, str, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        self._latest: dict[tuple[str, str], _Run] = {}
        self._states: dict[tuple[str, str], CheckState] = {}
        self._availability: dict[tuple[str, str], dict[str, Availability]] = {}
        self._refreshed: datetime | None = None
        self._pruned: int | None = None  # the hour bucket last pruned
        self._failing = ""  # the last error, logged once

    # ---- writing (the engine thread) ----------------------------------------------------

    def add(self, obs: Observation) -> None:
        """Count one observation (in memory until the next flush)."""
        at = int(obs.at.timestamp())
        column = 0 if obs.status == Status.OK else 1 if obs.status == Status.FAIL else 2
        for width in (HOUR, DAY):
            self._counts[(obs.host, obs.probe, width, at - at % width)][column] += 1
        key = (obs.host, obs.probe)
        previous = self._latest.get(key)
        if previous is None:
            self._latest[key] = _Run(obs, obs.at, changed=False)
        elif previous.last.at <= obs.at:
            same = previous.last.status == obs.status
            self._latest[key] = _Run(
                obs, previous.since if same else obs.at, previous.changed or not same
            )

    def flush(self, now: datetime | None = None) -> None:
        """Write what was counted since the last flush, prune, and refresh the figures
        once a minute. Failures are logged once and retried: history never stops the
        engine."""
        now = now or utcnow()
        counts, latest = self._counts, self._latest
        if not counts and not latest and not self._due(now):
            return
        try:
            db = self._connection()
            with self._lock, db:
                # A new dict, swapped in whole: the HTTP threads read the old one meanwhile.
                states = dict(self._states) if self._states else self._read_states(db)
                db.executemany(
                    """INSERT INTO samples (host, probe, width, bucket, ok, fail, error)
                       VALUES (?,?,?,?,?,?,?)
                       ON CONFLICT (width, bucket, host, probe) DO UPDATE SET
                       ok = ok + excluded.ok, fail = fail + excluded.fail,
                       error = error + excluded.error""",
                    [(*key, *value) for key, value in counts.items()],
                )
                for (host, probe), run in latest.items():
                    state = _state_after(states.get((host, probe)), run)
                    states[(host, probe)] = state
                    db.execute(
                        """INSERT OR REPLACE INTO checks (host, probe, status, since, last, summary)
                           VALUES (?,?,?,?,?,?)""",
                        (
                            host,
                            probe,
                            state.status,
                            iso(state.since),
                            iso(state.last),
                            state.summary[:500],
                        ),
                    )
                self._prune(db, now)
            self._states = states
            self._counts = defaultdict(lambda: [0, 0, 0])
            self._latest = {}
            if self._due(now):
                self._refresh(db, now)
            if self._failing:
                log.warning("probe history writable again (%s)", self.path)
                self._failing = ""
        except (OSError, sqlite3.Error) as exc:
            if str(exc) != self._failing:
                log.error("cannot write the probe history %s: %s", self.path, exc)
                self._failing = str(exc)
            self._drop()

    def _prune(self, db: sqlite3.Connection, now: datetime) -> None:
        hour = int(now.timestamp()) // HOUR
        if self._pruned == hour:
            return
        self._pruned = hour
        at = int(now.timestamp())
        db.execute("DELETE FROM samples WHERE width=? AND bucket < ?", (HOUR, at - HOURS_KEPT))
        db.execute("DELETE FROM samples WHERE width=? AND bucket < ?", (DAY, at - self.days * DAY))

    def _due(self, now: datetime) -> bool:
        return self._refreshed is None or (now - self._refreshed).total_seconds() >= REFRESH

    # ---- reading --------------------------------------------------------------------------

    def refresh(self, now: datetime | None = None) -> None:
        """Compute the availability figures now (the daemon does it once a minute)."""
        try:
            self._refresh(self._connection(), now or utcnow())
        except (OSError, sqlite3.Error) as exc:
            log.error("cannot read the probe history %s: %s", self.path, exc)
            self._drop()

    def _refresh(self, db: sqlite3.Connection, now: datetime) -> None:
        at = int(now.timestamp())
        figures: dict[tuple[str, str], dict[str, Availability]] = {}
        with self._lock:
            if not self._states:
                self._states = self._read_states(db)
            for name, span in WINDOWS:
                if span > timedelta(days=self.days):
                    continue
                seconds = int(span.total_seconds())
                width = HOUR if seconds <= HOURS_KEPT else DAY
                # Whole buckets: the one `now` is in and those before it, `span` in all.
                first = at - at % width - seconds + width
                rows = db.execute(
                    """SELECT host, probe, SUM(ok), SUM(fail), SUM(error) FROM samples
                       WHERE width=? AND bucket >= ? GROUP BY host, probe""",
                    (width, first),
                ).fetchall()
                for host, probe, ok, fail, error in rows:
                    judged = int(ok) + int(fail)
                    ratio = int(ok) / judged if judged else None
                    figures.setdefault((host, probe), {})[name] = Availability(
                        ratio, judged, int(error)
                    )
        self._availability = figures
        self._refreshed = now

    def states(self) -> dict[tuple[str, str], CheckState]:
        """Each check's state as of the last flush."""
        return dict(self._states)

    def availability(self) -> dict[tuple[str, str], dict[str, Availability]]:
        """Each check's availability per window, as of the last refresh."""
        return self._availability

    @property
    def refreshed(self) -> datetime | None:
        return self._refreshed

    def windows(self) -> list[str]:
        return [name for name, span in WINDOWS if span <= timedelta(days=self.days)]

    def _read_states(self, db: sqlite3.Connection) -> dict[tuple[str, str], CheckState]:
        states = {}
        for host, probe, status, since, last, summary in db.execute(
            "SELECT host, probe, status, since, last, summary FROM checks"
        ):
            since_at, last_at = parse_iso(since), parse_iso(last)
            if since_at and last_at:
                states[(host, probe)] = CheckState(host, probe, status, since_at, last_at, summary)
        return states

    # ---- the connection -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            ensure_private_dir(self.path.parent)
            # 0600 before SQLite creates it with the umask; its -wal and -shm follow.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            os.chmod(self.path, 0o600)
            db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # a lost last second of counts is fine
                db.executescript(_SCHEMA)
                for suffix in ("-wal", "-shm"):
                    side = Path(f"{self.path}{suffix}")
                    if side.exists():
                        os.chmod(side, 0o600)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def _drop(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    def close(self) -> None:
        self._drop()


@dataclass(frozen=True)
class _Run:
    """A check's samples since the last flush: the latest, and when its status began
    (within this batch; `changed`: it changed within the batch)."""

    last: Observation
    since: datetime
    changed: bool


def _state_after(before: CheckState | None, run: _Run) -> CheckState:
    obs = run.last
    status = str(obs.status)
    unchanged = before is not None and before.status == status and not run.changed
    since = before.since if unchanged and before is not None else run.since
    return CheckState(obs.host, obs.probe, status, since, obs.at, obs.summary)
