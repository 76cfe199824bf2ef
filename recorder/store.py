"""The store: SQLite in the state directory (WAL, versioned schema, 0600 files), or a
shared PostgreSQL (`store.url`) behind the same interface.

The daemon and the CLI use it at the same time. Every change is committed before it is
reported, and every write is idempotent (timeline entries carry a per-incident key), so a
daemon killed with -9 and restarted neither loses nor duplicates anything.

Who writes what: the daemon owns an incident's detection fields (status open/resolved,
times, affected, root causes, engine data); people own the postmortem fields and closing
(status closed). The daemon never writes over a closed incident.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from probes.private import make_private_dirs
from recorder.model import (
    Affected,
    Cause,
    Deployed,
    EntryKind,
    Incident,
    IncidentStatus,
    Notice,
    Severity,
    SignalRecord,
    Step,
    Task,
    TimelineEntry,
    iso,
    parse_iso,
    utcnow,
)


@dataclass(frozen=True)
class Migration:
    """One schema step with its SQL per engine where they differ (a plain string in
    MIGRATIONS is the same SQL on both)."""

    sqlite: str
    postgres: str

    @classmethod
    def serial_ids(cls, sql: str) -> Migration:
        """SQLite's AUTOINCREMENT ids are SERIAL on PostgreSQL; the rest is the same."""
        return cls(sql, sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "SERIAL PRIMARY KEY"))


# Each migration takes the schema from version i to i+1; never edit one that shipped.
# SQLite keeps the version in PRAGMA user_version, PostgreSQL in the schema_version table.
MIGRATIONS: list[str | Migration] = [
    Migration.serial_ids(
        """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        status TEXT NOT NULL,
        severity TEXT NOT NULL DEFAULT 'outage',
        title TEXT NOT NULL,
        service TEXT NOT NULL,
        fault TEXT,
        hosts TEXT NOT NULL DEFAULT '[]',
        started_at TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        resolved_at TEXT,
        closed_at TEXT,
        affected TEXT NOT NULL DEFAULT '{}',
        root_causes TEXT NOT NULL DEFAULT '[]',
        tasks TEXT NOT NULL DEFAULT '[]',
        data TEXT NOT NULL DEFAULT '{}',
        postmortem TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX incidents_status ON incidents(status, service);
    CREATE TABLE timeline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        key TEXT NOT NULL,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        source TEXT NOT NULL,
        UNIQUE (incident_id, key)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        service TEXT NOT NULL,
        version TEXT NOT NULL,
        at TEXT NOT NULL,
        source TEXT NOT NULL
    );
    CREATE INDEX events_service ON events(service, at);
    CREATE TABLE alerts (
        fingerprint TEXT PRIMARY KEY,
        incident_id INTEGER REFERENCES incidents(id),
        status TEXT NOT NULL,
        name TEXT NOT NULL,
        starts_at TEXT,
        ends_at TEXT,
        updated_at TEXT NOT NULL
    );
    """
    ),
    # 2: the notification outbox (#17), written in the transaction of the incident change
    # that produced each event; the sender marks rows sent or failed.
    Migration.serial_ids(
        """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT NOT NULL UNIQUE,
        receiver TEXT NOT NULL,
        event TEXT NOT NULL,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        payload TEXT NOT NULL,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(state, receiver, next_attempt_at, id);
    """
    ),
    # 3: one-off maintenance windows (#17); recurring ones live in the config.
    Migration.serial_ids(
        """
    CREATE TABLE maintenance (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        service TEXT NOT NULL,
        host TEXT,
        starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX maintenance_ends ON maintenance(ends_at);
    """
    ),
    # 4: an incident's signals are rows, and its timeline entries carry their step (#22.2).
    # Both lived in the incident's `data` JSON, one member per alert that joined it, so
    # applying one alert rewrote (and fsynced) the whole incident: work that grew with
    # every alert. Existing incidents are moved over as they are: same signals, in the
    # same order (rowid), same steps. PostgreSQL's json (not jsonb) keeps the members'
    # order; a CASE hands json_each NULL (no rows) where `signals` is not an object.
    Migration(
        """
    CREATE TABLE signals (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (incident_id, key)
    );
    INSERT INTO signals (incident_id, key, body)
        SELECT incidents.id, s.key, s.value
        FROM incidents, json_each(incidents.data, '$.signals') AS s
        WHERE json_type(incidents.data, '$.signals') = 'object'
        ORDER BY incidents.id, s.id;
    ALTER TABLE timeline ADD COLUMN step TEXT;
    UPDATE timeline SET step = (
        SELECT s.value FROM incidents AS i, json_each(i.data, '$.steps') AS s
        WHERE i.id = timeline.incident_id AND s.key = timeline.key
          AND json_type(i.data, '$.steps') = 'object' AND s.type = 'text');
    UPDATE incidents SET data = json_remove(data, '$.signals', '$.steps')
        WHERE json_type(data, '$.signals') IS NOT NULL OR json_type(data, '$.steps') IS NOT NULL;
    """,
        """
    CREATE TABLE signals (
        id SERIAL PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        key TEXT NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (incident_id, key)
    );
    INSERT INTO signals (incident_id, key, body)
        SELECT i.id, s.key, s.value::text
        FROM incidents AS i,
             json_each(CASE WHEN json_typeof(i.data::json -> 'signals') = 'object'
                            THEN i.data::json -> 'signals' END) WITH ORDINALITY AS s(key, value, n)
        ORDER BY i.id, s.n;
    ALTER TABLE timeline ADD COLUMN step TEXT;
    UPDATE timeline SET step = (
        SELECT i.data::json -> 'steps' ->> timeline.key FROM incidents AS i
        WHERE i.id = timeline.incident_id
          AND json_typeof(i.data::json -> 'steps') = 'object'
          AND json_typeof(i.data::json -> 'steps' -> timeline.key) = 'string');
    UPDATE incidents SET data = (data::jsonb - 'signals' - 'steps')::text
        WHERE data::json -> 'signals' IS NOT NULL OR data::json -> 'steps' IS NOT NULL;
    """,
    ),
    # 5: the leadership lease (#21): one row per lease, taken over by a conditional
    # update once expired (no advisory lock: those break behind transaction pooling).
    """
    CREATE TABLE lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    """,
    # 6: at most one OPEN incident per book key (the service, or `monitoring:<host>`), so
    # that even two recorders that both believe they lead (one paused past its lease)
    # cannot open two records of one outage (#21). Rows from before carry no key (NULL
    # never conflicts): they may already hold such a pair, kept for a person to merge.
    """
    ALTER TABLE incidents ADD COLUMN book_key TEXT;
    CREATE UNIQUE INDEX incidents_open_key ON incidents(book_key) WHERE status = 'open';
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# The members of an incident's `data` kept in rows of their own (migration 4).
SIGNALS = "signals"


def data_row(data: dict[str, Any]) -> dict[str, Any]:
    """What of an incident's `data` its own row keeps: all but the signals (rows)."""
    return {k: v for k, v in data.items() if k != SIGNALS}


# Delivery ids are UUIDs derived from what the delivery is, so a retry, or a row rebuilt
# after a crash, carries the same id and a receiver can drop the duplicate.
DELIVERY_NAMESPACE = uuid.UUID("5f1d6c1e-6b3a-4f0e-9a57-1c2f3d4e5f60")


def delivery_id(incident_id: int, detected_at: datetime, key: str, receiver: str) -> str:
    return str(uuid.uuid5(DELIVERY_NAMESPACE, f"{incident_id}/{iso(detected_at)}/{key}/{receiver}"))


def notice_snapshot(incident: Incident, notice: Notice) -> dict[str, Any]:
    """What a message says: the incident as it was when the event happened."""
    return {
        "event": notice.event,
        "key": notice.key,
        "at": iso(notice.at),
        "text": notice.text,
        "incident": {
            "id": incident.id,
            "ref": incident.ref,
            "status": incident.status,
            "severity": incident.severity,
            "title": incident.title,
            "service": incident.service,
            "hosts": list(incident.hosts),
            "fault": incident.fault,
            "started_at": iso(incident.started_at),
            "harm_began_at": iso(incident.harm_began),  # null: opened on a risk, no harm yet
            "detected_at": iso(incident.detected_at),
            "resolved_at": iso(incident.resolved_at),
            "closed_at": iso(incident.closed_at),
            "planned": incident.planned,
            "affected": {
                "ratio": incident.affected.ratio,
                "method": incident.affected.method,
                "evidence": incident.affected.evidence,
            },
            "root_causes": [
                {"fault": c.fault, "confidence": c.confidence} for c in incident.root_causes[:3]
            ],
        },
    }


class StoreError(Exception):
    """The store cannot be opened or written (disk full, read-only, corrupt)."""


class IncidentTaken(StoreError):
    """Another incident with this book key is open already (another recorder opened it)."""


class _DuplicateKey(StoreError):
    """A unique index refused a PostgreSQL write (sqlite3 raises IntegrityError)."""


def book_key(service: str, severity: str, hosts: Iterable[str]) -> str:
    """The key the incident book files an open incident under, one open incident each."""
    if severity == Severity.MONITORING:
        return f"monitoring:{next(iter(hosts), service)}"
    return service


class StoreSchemaError(StoreError):
    """The store was written by a newer recorder: waiting will not help."""


class UnsafeDirError(OSError):
    """A state dir the recorder will not use: another user's, or a shared one (/tmp)."""


def ensure_private_dir(path: Path) -> None:
    """`path` (the state dir or a directory in it) as a directory only this user reads.

    Missing directories are created 0700 whatever the umask, parents included. An
    existing one is tightened to 0700 through a descriptor opened without following a
    symlink: a state dir that is a symlink is used as it is and never changed through
    (a read-only command once made the shared directory it pointed to 0700). Refused with
    UnsafeDirError: a directory this user does not own, or a shared sticky one (`/tmp`)."""
    make_private_dirs(path)
    if os.path.islink(path):
        _check_own(path, os.stat(path))  # used, never changed through; the target is ours
        return
    # O_NOFOLLOW: a symlink swapped in since is refused (ELOOP/ENOTDIR), not followed.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        _check_own(path, info)
        # Always, even when already 0700: on a read-only filesystem this is what says
        # so (EROFS) before SQLite's vaguer "unable to open database file".
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _check_own(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise UnsafeDirError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): "
            "use a directory of its own"
        )
    if info.st_mode & stat.S_ISVTX:
        raise UnsafeDirError(
            f"{path} is a shared directory (sticky bit, like /tmp): use a directory of its "
            "own under it"
        )


def _touch_private(path: Path) -> None:
    """Create the file 0600 before SQLite does (it would honour the umask)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


class _Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> builtins.list[Any]: ...


class _DB(Protocol):
    """What the store needs of a connection: sqlite3's, or _Postgres around psycopg's."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Cursor: ...

    def close(self) -> None: ...


POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# Held in the migrating transaction only (released at its end), so it is safe behind a
# transaction-pooling PgBouncer: two recorders starting at once migrate one after the other.
_MIGRATE_LOCK = 0x7265636F72646572  # "recorder"


class _Row:
    """A PostgreSQL row read like sqlite3.Row: by column name or by position, iterated
    (unpacked) as its values, and `dict(row)` by name."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[str, int], values: Sequence[Any]) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: str | int) -> Any:
        return self._values[key if isinstance(key, int) else self._index[key]]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._index)


class _Postgres:
    """A psycopg connection with sqlite3's calling convention: `?` placeholders, rows by
    name or position, and its errors raised as StoreError (which every caller handles, as
    it does sqlite3.Error)."""

    def __init__(self, url: str, password_file: str | None) -> None:
        import psycopg  # only when PostgreSQL is configured: the extra is optional

        self._error = psycopg.Error
        kwargs: dict[str, Any] = {}
        if password_file:
            # Read at each connect so a rotated password is picked up; never in the URL
            # (which shows in errors and `ps`).
            kwargs["password"] = Path(password_file).read_text().strip()
        try:
            # autocommit: a read holds no transaction open; writes say BEGIN themselves.
            self.conn = psycopg.connect(
                url, autocommit=True, connect_timeout=10, row_factory=_row_factory, **kwargs
            )
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to {redact(url)}: {exc}") from None

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> _Cursor:
        try:
            # No literal % in the store's SQL, so only the placeholders change.
            cur = self.conn.execute(sql.replace("?", "%s"), tuple(parameters) or None)
        except self._error as exc:
            if getattr(exc, "sqlstate", None) == "23505":  # unique_violation
                raise _DuplicateKey(f"PostgreSQL: {exc}".strip()) from None
            raise StoreError(f"PostgreSQL: {exc}".strip()) from None
        return cur

    @property
    def usable(self) -> bool:
        return not (self.conn.closed or self.conn.broken)

    def close(self) -> None:
        self.conn.close()


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], _Row]:
    index = {d.name: i for i, d in enumerate(cursor.description or ())}
    return lambda values: _Row(index, values)


def redact(url: str) -> str:
    """The URL without a password, should one be in it (the config refuses that)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"
    return url


class Store:
    """One SQLite database, or a PostgreSQL one (`url`). Thread-safe: each thread gets its
    own connection."""

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        lazy: bool = False,
        url: str | None = None,
        password_file: str | None = None,
    ) -> None:
        """Open (create, migrate) the store. `lazy`: a store that cannot be opened now
        (read-only or full filesystem, missing permissions, PostgreSQL down) is not an
        error yet; every write tries again and raises StoreError until it can, and reads
        fall back to a read-only view of what is on disk (SQLite). The daemon starts this
        way so that it keeps probing, and says why on /healthz, while its store is
        unusable. `url`: postgresql://user@host:port/db, the password from
        `password_file` or libpq's own PGPASSWORD / ~/.pgpass."""
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / "recorder.db"
        self.url = url
        self.password_file = password_file
        self.postgres = bool(url)
        self.where = redact(url) if url else str(self.path)
        self._local = threading.local()
        self._ready = False
        self._open_lock = threading.Lock()
        try:
            self.open()
        except StoreSchemaError:
            raise
        except StoreError:
            if not lazy:
                raise

    @property
    def ready(self) -> bool:
        """The database is open for writing and its schema is current."""
        return self._ready

    def open(self) -> None:
        """Create and migrate the database unless that is done; StoreError if it cannot."""
        if self._ready:
            return
        with self._open_lock:
            if self._ready:
                return
            try:
                if not self.postgres:
                    ensure_private_dir(self.state_dir)
                    if not self.path.exists():
                        _touch_private(self.path)
                with self._tx(self._connect()) as db:
                    self._migrate(db)
            except (OSError, sqlite3.Error, StoreError) as exc:
                # A connection made while the filesystem refused writes stays unusable.
                self._drop("conn")
                if isinstance(exc, StoreSchemaError):
                    raise
                raise StoreError(f"cannot open the store at {self.where}: {exc}") from None
            self._ready = True

    # ---- connections -------------------------------------------------------------------

    def _conn(self) -> _DB:
        """This thread's read-write connection (opening the store first if needed)."""
        if not self._ready:
            self.open()
        return self._connect()

    def _connect(self) -> _DB:
        if self.postgres:
            pg: _Postgres | None = getattr(self._local, "conn", None)
            if pg is None or not pg.usable:  # reconnect after the server went away
                assert self.url is not None
                pg = _Postgres(self.url, self.password_file)
                self._local.conn = pg
            return pg
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=True
            )
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # FULL: a committed change survives power loss, not just a process crash.
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA busy_timeout=10000")
            except sqlite3.Error:
                conn.close()
                raise
            self._local.conn = conn
            self._drop("ro")  # the read-only view is no longer needed in this thread
            for suffix in ("-wal", "-shm"):
                side = Path(str(self.path) + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
        return conn

    def _read(self) -> _DB:
        """A connection for reading: the read-write one when the store opens, otherwise
        a read-only view of the file as it is on disk."""
        try:
            return self._conn()
        except StoreError:
            if self.postgres or not self.path.exists():
                raise
        conn: sqlite3.Connection | None = getattr(self._local, "ro", None)
        if conn is None:
            # SQLite cannot open a WAL database read-only without writing its -shm file;
            # `immutable` reads the main file without locks. Safe here: nothing can write
            # a filesystem that refuses our writes too. Changes still in the -wal file of
            # a crashed writer are not seen; they are when the store opens.
            try:
                conn = sqlite3.connect(
                    self.path.resolve().as_uri() + "?immutable=1",
                    uri=True,
                    timeout=10.0,
                    isolation_level=None,
                    check_same_thread=True,
                )
                conn.row_factory = sqlite3.Row
                conn.execute("SELECT 1 FROM incidents LIMIT 1")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the store at {self.path}: {exc}") from None
            self._local.ro = conn
        return conn

    def _drop(self, name: str) -> None:
        conn: _DB | None = getattr(self._local, name, None)
        if conn is not None:
            conn.close()
            setattr(self._local, name, None)

    @property
    def in_batch(self) -> bool:
        """This thread is inside `batch()`: its writes wait for the batch's commit."""
        return bool(getattr(self._local, "batch", False))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group commit: every write of this thread inside is one transaction, committed
        (one fsync) at the end or rolled back as a whole when anything inside raises.
        Applying a webhook's alerts cost two fsynced commits per alert; the engine now
        commits several notifications at once and answers each after the commit."""
        if self.in_batch:
            yield  # already inside one: part of it
            return
        with self._tx():
            self._local.batch = True
            try:
                yield
            finally:
                self._local.batch = False

    @contextmanager
    def _tx(self, conn: _DB | None = None) -> Iterator[_DB]:
        """One write transaction, on this thread's connection unless given one (the open
        itself, before the store is ready). Inside `batch()`, part of the batch's."""
        if conn is None:
            conn = self._conn()
            if self.in_batch:
                yield conn  # an error propagates: the batch rolls back as a whole
                return
        # IMMEDIATE: SQLite takes the write lock now, not at the first write (which could
        # then fail with SQLITE_BUSY mid-transaction).
        conn.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if not self.postgres or conn.usable:  # type: ignore[attr-defined]
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def close(self) -> None:
        self._drop("conn")
        self._drop("ro")

    def _migrate(self, db: _DB) -> None:
        if self.postgres:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATE_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = int(row[0] or 0)
        else:
            version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"the store's schema {version} is newer than this recorder ({SCHEMA_VERSION})"
            )
        for i in range(version, SCHEMA_VERSION):
            step = MIGRATIONS[i]
            sql = step if isinstance(step, str) else step.postgres if self.postgres else step.sqlite
            for statement in sql.split(";"):
                if statement.strip():
                    db.execute(statement)
            if self.postgres:
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (i + 1,))
            else:
                db.execute(f"PRAGMA user_version = {i + 1}")

    def schema_version(self) -> int:
        if self.postgres:
            return int(self._read().execute("SELECT version FROM schema_version").fetchone()[0])
        return int(self._read().execute("PRAGMA user_version").fetchone()[0])

    def integrity_ok(self) -> bool:
        if self.postgres:
            return True  # PostgreSQL checks its own pages (data checksums, amcheck)
        return bool(self._read().execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def check_writable(self) -> None:
        """Raise StoreError when a write cannot be committed now (disk full, read-only)."""
        try:
            with self._tx() as db:
                db.execute("CREATE TABLE IF NOT EXISTS probe_write (x INTEGER)")
                db.execute("DELETE FROM probe_write")
                db.execute("INSERT INTO probe_write VALUES (1)")
        except (sqlite3.Error, StoreError) as exc:
            raise StoreError(f"store not writable: {exc}") from None

    # ---- incidents ---------------------------------------------------------------------

    def create_incident(self, incident: Incident, notices: Iterable[Notice] = ()) -> Incident:
        try:
            return self._create(incident, notices)
        except BaseException:
            incident.id = 0  # only once committed: a failed create must be retried as one
            raise

    def _create(self, incident: Incident, notices: Iterable[Notice]) -> Incident:
        with self._tx() as db:
            try:
                cur = self._insert_incident(db, incident)
            except (sqlite3.IntegrityError, _DuplicateKey) as exc:
                raise IncidentTaken(
                    f"an incident for {incident.service} is open already: {exc}"
                ) from None
            new_id = int(cur.fetchone()[0])
            self._put_signals(db, new_id, incident.signals, None)
            self._insert_entries(db, new_id, incident.timeline)
            incident.id = new_id  # the notices' snapshots carry it
            self._insert_notices(db, incident, notices)
        return incident

    @staticmethod
    def _insert_incident(db: _DB, incident: Incident) -> _Cursor:
        return db.execute(
            """INSERT INTO incidents (status, severity, title, service, fault, hosts,
                   started_at, detected_at, resolved_at, affected, root_causes, tasks, data,
                   book_key)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id""",
            (
                incident.status,
                incident.severity,
                incident.title,
                incident.service,
                incident.fault,
                json.dumps(incident.hosts),
                iso(incident.started_at),
                iso(incident.detected_at),
                iso(incident.resolved_at),
                json.dumps(asdict(incident.affected)),
                json.dumps([asdict(c) for c in incident.root_causes]),
                json.dumps([asdict(t) for t in incident.tasks]),
                json.dumps(data_row(incident.data), default=str),
                book_key(incident.service, incident.severity, incident.hosts),
            ),
        )

    def save_detection(
        self,
        incident: Incident,
        new_entries: Iterable[TimelineEntry] = (),
        notices: Iterable[Notice] = (),
        signals: Iterable[str] | None = None,
    ) -> bool:
        """Write the daemon's fields, new timeline entries and the signals named in
        `signals` (None: every signal) in one transaction: the engine names the signals
        that changed, so one alert writes one signal row, not all of them.

        Returns False (and writes nothing) when people closed the incident meanwhile.
        """
        with self._tx() as db:
            cur = db.execute(
                """UPDATE incidents SET status=?, title=?, fault=?, hosts=?, started_at=?,
                   resolved_at=?, affected=?, root_causes=?, data=?
                   WHERE id=? AND status != 'closed'""",
                (
                    incident.status,
                    incident.title,
                    incident.fault,
                    json.dumps(incident.hosts),
                    iso(incident.started_at),
                    iso(incident.resolved_at),
                    json.dumps(asdict(incident.affected)),
                    json.dumps([asdict(c) for c in incident.root_causes]),
                    json.dumps(data_row(incident.data), default=str),
                    incident.id,
                ),
            )
            if cur.rowcount == 0:
                return False
            self._put_signals(db, incident.id, incident.signals, signals)
            self._insert_entries(db, incident.id, new_entries)
            self._insert_notices(db, incident, notices)
        return True

    def add_entries(self, incident_id: int, entries: Iterable[TimelineEntry]) -> None:
        with self._tx() as db:
            self._insert_entries(db, incident_id, entries)

    @staticmethod
    def _put_signals(
        db: _DB,
        incident_id: int,
        signals: dict[str, SignalRecord],
        keys: Iterable[str] | None,
    ) -> None:
        """Upsert the signals named by `keys` (None: all). A signal keeps its row, so
        reading them back by rowid gives the order they joined in."""
        for key in signals if keys is None else keys:
            if key not in signals:
                continue
            db.execute(
                """INSERT INTO signals (incident_id, key, body) VALUES (?,?,?)
                   ON CONFLICT(incident_id, key) DO UPDATE SET body=excluded.body""",
                (incident_id, key, json.dumps(signals[key].to_json())),
            )

    @staticmethod
    def _insert_entries(db: _DB, incident_id: int, entries: Iterable[TimelineEntry]) -> None:
        for e in entries:
            db.execute(
                """INSERT INTO timeline (incident_id, key, at, kind, text, source, step)
                   VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING""",
                (
                    incident_id,
                    e.key or uuid.uuid4().hex,
                    iso(e.at),
                    e.kind,
                    e.text,
                    e.source,
                    str(e.step) if e.step is not None else None,
                ),
            )

    def add_notices(self, incident: Incident, notices: Iterable[Notice]) -> int:
        """Queue notices about an incident on their own (reminders); returns how many
        deliveries are new (a notice already queued is not queued twice)."""
        with self._tx() as db:
            return self._insert_notices(db, incident, notices)

    @staticmethod
    def _insert_notices(db: _DB, incident: Incident, notices: Iterable[Notice]) -> int:
        added = 0
        for notice in notices:
            payload = json.dumps(notice_snapshot(incident, notice))
            for receiver in notice.receivers:
                cur = db.execute(
                    """INSERT INTO outbox (delivery_id, receiver, event, incident_id,
                       payload, created_at, next_attempt_at) VALUES (?,?,?,?,?,?,?)
                       ON CONFLICT DO NOTHING""",
                    (
                        delivery_id(incident.id, incident.detected_at, notice.key, receiver),
                        receiver,
                        notice.event,
                        incident.id,
                        payload,
                        iso(notice.at),
                        iso(notice.at),
                    ),
                )
                added += cur.rowcount
        return added

    def close_incident(
        self,
        incident_id: int,
        postmortem: dict[str, Any],
        tasks: builtins.list[Task],
        closed_at: datetime,
        notices: Iterable[Notice] = (),
    ) -> None:
        with self._tx() as db:
            db.execute(
                """UPDATE incidents SET status='closed', closed_at=?, postmortem=?, tasks=?
                   WHERE id=?""",
                (
                    iso(closed_at),
                    json.dumps(postmortem),
                    json.dumps([asdict(t) for t in tasks]),
                    incident_id,
                ),
            )
            notices = list(notices)
            if notices:
                row = db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
                self._insert_notices(db, self._incident(db, row, with_timeline=False), notices)

    def save_postmortem(self, incident_id: int, postmortem: dict[str, Any]) -> None:
        """Keep what people wrote so far (a refused close keeps its flags)."""
        with self._tx() as db:
            db.execute(
                "UPDATE incidents SET postmortem=? WHERE id=? AND status != 'closed'",
                (json.dumps(postmortem), incident_id),
            )

    def get(self, incident_id: int) -> Incident | None:
        db = self._read()
        row = db.execute("SELECT * FROM incidents WHERE id=?", (incident_id,)).fetchone()
        if row is None:
            return None
        return self._incident(db, row)

    def list(
        self,
        status: str | None = None,
        service: str | None = None,
        *,
        after: int | None = None,
        limit: int | None = None,
    ) -> builtins.list[Incident]:
        """Incidents by id, oldest first; `after` and `limit` read one page of them."""
        db = self._read()
        sql = "SELECT * FROM incidents"
        args: builtins.list[str | int] = []
        where = []
        if status:
            where.append("status=?")
            args.append(status)
        if service:
            where.append("service=?")
            args.append(service)
        if after is not None:
            where.append("id > ?")
            args.append(after)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        rows = db.execute(sql, args).fetchall()
        return [self._incident(db, r, with_timeline=False) for r in rows]

    def detection_delays(self) -> tuple[int, float]:
        """(count, sum of seconds) of detected_at - started_at over every outage, by one
        aggregate query: /metrics reads no incident rows into Python."""
        seconds = (
            "CAST(EXTRACT(EPOCH FROM CAST(detected_at AS timestamptz)"
            " - CAST(started_at AS timestamptz)) AS numeric)"
            if self.postgres
            else "(julianday(detected_at) - julianday(started_at)) * 86400.0"
        )
        biggest = "GREATEST" if self.postgres else "MAX"  # SQLite's two-argument MAX
        row = (
            self._read()
            .execute(
                f"SELECT COUNT(*), COALESCE(SUM({biggest}(0.0, ROUND({seconds}, 3))), 0.0)"
                " FROM incidents WHERE severity='outage'"
            )
            .fetchone()
        )
        return int(row[0]), float(row[1])

    def page(
        self,
        *,
        status: str | None = None,
        service: str | None = None,
        fault: str | None = None,
        limit: int = 100,
        offset: int = 0,
        closed_first: bool = False,
    ) -> tuple[builtins.list[Incident], int]:
        """One page of incidents for a list (the web pages): open ones first, then the most
        recently detected (`closed_first`: the most recently closed), and how many match.

        Only what a list shows is read: no timeline, and `data`, `tasks` and `postmortem`
        stay empty, so a page costs the same with 10 or 100,000 incidents stored."""
        where, args = [], []
        for column, value in (("status", status), ("service", service), ("fault", fault)):
            if value:
                where.append(f"{column}=?")
                args.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        order = (
            "closed_at DESC, id DESC"
            if closed_first
            else "status='open' DESC, detected_at DESC, id DESC"
        )
        db = self._read()
        total = int(db.execute(f"SELECT COUNT(*) FROM incidents{clause}", args).fetchone()[0])
        rows = db.execute(
            "SELECT id, status, severity, title, service, fault, hosts, started_at, detected_at,"
            f" resolved_at, closed_at, affected, root_causes FROM incidents{clause}"
            f" ORDER BY {order} LIMIT ? OFFSET ?",
            [*args, max(0, limit), max(0, offset)],
        ).fetchall()
        found = [_listed(r) for r in rows]
        return found, total

    def distinct(self, column: str) -> builtins.list[str]:
        """The values `service` or `fault` takes across incidents (a list page's filters)."""
        if column not in ("service", "fault", "status"):
            raise ValueError(f"not a filter column: {column}")
        rows = self._read().execute(
            f"SELECT DISTINCT {column} FROM incidents WHERE {column} IS NOT NULL ORDER BY 1"
        )
        return [str(r[0]) for r in rows.fetchall()]

    def open_incidents(self) -> builtins.list[Incident]:
        db = self._read()
        rows = db.execute("SELECT * FROM incidents WHERE status='open' ORDER BY id").fetchall()
        return [self._incident(db, r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = (
            self._read()
            .execute("SELECT status, COUNT(*) FROM incidents GROUP BY status")
            .fetchall()
        )
        return {r[0]: r[1] for r in rows}

    def counts_by_fault(self) -> dict[str, int]:
        """Incidents by the fault they were opened with (a re-ranking never moves them)."""
        opened = (
            "CAST(data AS jsonb)->>'opened_fault'"
            if self.postgres
            else "json_extract(data, '$.opened_fault')"
        )
        rows = (
            self._read()
            .execute(
                f"SELECT COALESCE({opened}, fault, 'unknown'), COUNT(*) FROM incidents GROUP BY 1"
            )
            .fetchall()
        )
        return {r[0]: r[1] for r in rows}

    def _incident(self, db: _DB, row: Any, with_timeline: bool = True) -> Incident:
        incident = _listed(row)
        incident.tasks = [Task(**t) for t in json.loads(row["tasks"])]
        incident.data = json.loads(row["data"])
        rows = db.execute(
            "SELECT key, body FROM signals WHERE incident_id=? ORDER BY id", (incident.id,)
        ).fetchall()
        # Rows since migration 4; an incident's `data` from before keeps its own (a row
        # inserted by an older version after the migration), moved to rows once written.
        legacy = incident.data.pop(SIGNALS, None)
        bodies: dict[str, Any] = dict(legacy) if isinstance(legacy, dict) else {}
        bodies.update((r["key"], json.loads(r["body"])) for r in rows)
        for key, body in bodies.items():
            record = SignalRecord.from_json(body)
            if record is not None:
                incident.signals[key] = record
        incident.postmortem = json.loads(row["postmortem"])
        if with_timeline:
            # A deploy entry's key names its event row (deploy_entry), which holds the
            # service and version as typed columns.
            entries = db.execute(
                """SELECT t.*, ev.service AS deploy_service, ev.version AS deploy_version
                   FROM timeline t LEFT JOIN events ev
                     ON t.kind = 'deploy' AND ev.kind = 'deploy' AND t.key = 'deploy:' || ev.id
                   WHERE t.incident_id=? ORDER BY t.at, t.id""",
                (incident.id,),
            ).fetchall()
            incident.timeline = [
                TimelineEntry(
                    at=_required(e["at"]),
                    kind=EntryKind.read(e["kind"]),
                    text=e["text"],
                    source=e["source"],
                    key=e["key"],
                    step=Step.read(e["step"]) or incident.step_of(e["key"]),
                    deployed=(
                        Deployed(e["deploy_service"], e["deploy_version"])
                        if e["deploy_version"] is not None
                        else None
                    ),
                )
                for e in entries
            ]
        return incident

    # ---- events (deploys) --------------------------------------------------------------

    def add_deploy(self, service: str, version: str, at: datetime, source: str) -> int:
        """Record a deploy and write it into the timeline of the service's open incident."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO events (kind, service, version, at, source)"
                " VALUES ('deploy',?,?,?,?) RETURNING id",
                (service, version, iso(at), source),
            )
            event_id = int(cur.fetchone()[0])
            for (incident_id,) in db.execute(
                "SELECT id FROM incidents WHERE status='open' AND service=?", (service,)
            ).fetchall():
                self._insert_entries(
                    db, incident_id, [deploy_entry(service, version, at, source, event_id)]
                )
        return event_id

    def deploys(
        self, service: str, since: datetime, until: datetime
    ) -> builtins.list[dict[str, Any]]:
        rows = (
            self._read()
            .execute(
                """SELECT id, service, version, at, source FROM events
               WHERE kind='deploy' AND service=? AND at >= ? AND at <= ? ORDER BY at""",
                (service, iso(since), iso(until)),
            )
            .fetchall()
        )
        return [
            {
                "id": r["id"],
                "service": r["service"],
                "version": r["version"],
                "at": _required(r["at"]),
                "source": r["source"],
            }
            for r in rows
        ]

    def resolved_between(self, service: str, since: datetime, until: datetime) -> int:
        """How many of the service's incidents resolved in [since, until]: the service was
        healthy again after `since`."""
        row = (
            self._read()
            .execute(
                """SELECT count(*) FROM incidents
               WHERE service=? AND resolved_at >= ? AND resolved_at <= ?""",
                (service, iso(since), iso(until)),
            )
            .fetchone()
        )
        return int(row[0])

    # ---- the notification outbox --------------------------------------------------------

    def next_delivery(self, receiver: str, now: datetime) -> dict[str, Any] | None:
        """The receiver's oldest pending delivery if it is due (one at a time, in order:
        a resolve never overtakes its trigger)."""
        row = (
            self._read()
            .execute(
                "SELECT * FROM outbox WHERE state='pending' AND receiver=? ORDER BY id LIMIT 1",
                (receiver,),
            )
            .fetchone()
        )
        if row is None or row["next_attempt_at"] > iso(now):
            return None
        return dict(row)

    def delivery_done(self, row_id: int, state: str, at: datetime, error: str | None) -> None:
        """Mark a delivery sent (or failed for good: given up after max_age)."""
        with self._tx() as db:
            db.execute(
                """UPDATE outbox SET state=?, attempts=attempts+1, sent_at=?, last_error=?
                   WHERE id=?""",
                (state, iso(at) if state == "sent" else None, error, row_id),
            )

    def delivery_retry(self, row_id: int, next_at: datetime, error: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts=attempts+1, next_attempt_at=?, last_error=? WHERE id=?",
                (iso(next_at), error, row_id),
            )

    def deliveries(self, states: Iterable[str]) -> builtins.list[dict[str, Any]]:
        wanted = builtins.list(states)
        marks = ",".join("?" * len(wanted))
        rows = (
            self._read()
            .execute(
                "SELECT id, delivery_id, receiver, event, incident_id, created_at, state,"
                f" attempts, next_attempt_at, last_error, sent_at FROM outbox"
                f" WHERE state IN ({marks}) ORDER BY id",
                wanted,
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def outbox_depth(self) -> int:
        row = self._read().execute("SELECT count(*) FROM outbox WHERE state='pending'").fetchone()
        return int(row[0])

    # ---- maintenance windows (one-off) ---------------------------------------------------

    def add_window(
        self,
        service: str,
        host: str | None,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        source: str,
    ) -> int:
        with self._tx() as db:
            cur = db.execute(
                """INSERT INTO maintenance (service, host, starts_at, ends_at, reason, source,
                   created_at) VALUES (?,?,?,?,?,?,?) RETURNING id""",
                (service, host, iso(starts_at), iso(ends_at), reason, source, iso(utcnow())),
            )
            return int(cur.fetchone()[0])

    def windows(self, at: datetime | None = None) -> builtins.list[dict[str, Any]]:
        """One-off windows on at `at`; with no time, those not yet over now."""
        db = self._read()
        if at is None:
            rows = db.execute(
                "SELECT * FROM maintenance WHERE ends_at > ? ORDER BY starts_at, id",
                (iso(utcnow()),),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT * FROM maintenance WHERE starts_at <= ? AND ends_at > ? ORDER BY id",
                (iso(at), iso(at)),
            ).fetchall()
        return [dict(r) for r in rows]

    def end_window(self, window_id: int, at: datetime) -> bool:
        """End a window now; False when there is no such window still on."""
        with self._tx() as db:
            cur = db.execute(
                "UPDATE maintenance SET ends_at=? WHERE id=? AND ends_at > ?",
                (iso(at), window_id, iso(at)),
            )
            return cur.rowcount > 0

    # ---- the leadership lease -----------------------------------------------------------

    def take_lease(self, holder: str, seconds: float, now: datetime, name: str = "leader") -> bool:
        """Take or renew the lease `name` for `holder` until now + seconds; False (nothing
        written) while another holder's lease runs. One conditional UPDATE decides, so
        of two recorders taking an expired lease at once exactly one gets it. Times are
        the recorders' clocks: keep them in sync well within the lease."""
        expires = iso(now + timedelta(seconds=seconds))
        with self._tx() as db:
            db.execute(
                "INSERT INTO lease (name, holder, expires_at) VALUES (?,?,?)"
                " ON CONFLICT DO NOTHING",
                (name, holder, iso(now)),
            )
            cur = db.execute(
                "UPDATE lease SET holder=?, expires_at=? WHERE name=?"
                " AND (holder=? OR expires_at <= ?)",
                (holder, expires, name, holder, iso(now)),
            )
            return cur.rowcount == 1

    def release_lease(self, holder: str, now: datetime, name: str = "leader") -> None:
        """End `holder`'s lease now (a clean stop hands over at once); no-op otherwise."""
        with self._tx() as db:
            db.execute(
                "UPDATE lease SET expires_at=? WHERE name=? AND holder=?",
                (iso(now), name, holder),
            )

    def lease(self, name: str = "leader") -> tuple[str, datetime] | None:
        """(holder, expires_at) of the lease, or None when nobody ever took it."""
        row = (
            self._read()
            .execute("SELECT holder, expires_at FROM lease WHERE name=?", (name,))
            .fetchone()
        )
        return None if row is None else (str(row[0]), _required(row[1]))

    # ---- alerts (Alertmanager fingerprints) --------------------------------------------

    def alert(self, fingerprint: str) -> dict[str, Any] | None:
        row = (
            self._read()
            .execute("SELECT * FROM alerts WHERE fingerprint=?", (fingerprint,))
            .fetchone()
        )
        return dict(row) if row else None

    def put_alert(
        self,
        fingerprint: str,
        incident_id: int | None,
        status: str,
        name: str,
        starts_at: datetime | None,
        ends_at: datetime | None,
    ) -> None:
        with self._tx() as db:
            db.execute(
                """INSERT INTO alerts
                   (fingerprint, incident_id, status, name, starts_at, ends_at, updated_at)
                   VALUES (?,?,?,?,?,?,?)
                   ON CONFLICT(fingerprint) DO UPDATE SET incident_id=excluded.incident_id,
                   status=excluded.status, starts_at=excluded.starts_at, ends_at=excluded.ends_at,
                   updated_at=excluded.updated_at""",
                (
                    fingerprint,
                    incident_id,
                    status,
                    name,
                    iso(starts_at),
                    iso(ends_at),
                    iso(utcnow()),
                ),
            )


def deploy_entry(
    service: str, version: str, at: datetime, source: str, event_id: int
) -> TimelineEntry:
    return TimelineEntry(
        at=at,
        kind=EntryKind.DEPLOY,
        text=f"Deploy of {service} version {version} (recorded by {source})",
        source=source,
        key=f"deploy:{event_id}",
        deployed=Deployed(service, version),
    )


def _listed(row: Any) -> Incident:
    """An incident from its row's list columns (what a list shows); `_incident` adds the
    rest."""
    return Incident(
        id=row["id"],
        status=IncidentStatus(row["status"]),
        severity=Severity(row["severity"]),
        title=row["title"],
        service=row["service"],
        fault=row["fault"],
        hosts=json.loads(row["hosts"]),
        started_at=_required(row["started_at"]),
        detected_at=_required(row["detected_at"]),
        resolved_at=parse_iso(row["resolved_at"]),
        closed_at=parse_iso(row["closed_at"]),
        affected=Affected(**json.loads(row["affected"] or "{}")),
        root_causes=[Cause(**c) for c in json.loads(row["root_causes"])],
    )


def _required(value: str) -> datetime:
    parsed = parse_iso(value)
    assert parsed is not None
    return parsed
