"""The store's core: connections, write transactions, fencing, the write gate, and shared row helpers.

`StoreBase` opens either backend (a SQLite file, or a PostgreSQL database through
bot/store/postgres.py), brings its schema up to date (bot/store/schema.py, then the numbered
migrations), and gives every part of the `Store` what they all write and read through:
`transaction()`, `_rows()`, the leader's fence (`fenced`, `LeaseLost`), the urgent lane of the
write gate, the writes every part shares (a timeline line, an audit record, an incident's
versioned update) and the conversions between Python values and stored ones (`_to_db`,
`_from_db_datetime`, `_incident`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from bot.domain.incidents import Incident
from bot.store.migrations import migrations
from bot.store.postgres import PostgresBackend, is_postgres_url
from bot.store.schema import migrate_sqlite_baseline
from bot.store.sqlite import Tx, migrate_sqlite

_DATETIME_FIELDS = {f.name for f in fields(Incident) if "datetime" in str(f.type)}
_INCIDENT_COLUMNS = [f.name for f in fields(Incident)]


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _from_db_datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


LEASE = "timers"  # the one lease there is: who runs the timers and the delivery loop


class LeaseLost(Exception):
    """A fenced write found that another instance has taken the lease since this one took it."""


class StoreBase:
    """Connections, write transactions, fencing: what every part of the `Store` stands on.

    Two backends behind one class: SQLite (a file, the embedded default) and PostgreSQL (a
    `postgresql://` URL, for several instances; bot/store/postgres.py). The SQL is written once, in
    the dialect both accept (`?` placeholders, `ON CONFLICT`, `RETURNING`).

    Every write is one transaction that excludes every other writer (SQLite: `BEGIN IMMEDIATE`;
    PostgreSQL: an advisory lock all instances share), so a state change, its timeline line and its
    audit record land together or not at all, and a decision made inside one sees every write made
    before it. In a process, writes are serialised by a lock. On SQLite, reads use a read-only
    connection per thread: in WAL mode they see every committed write and never queue behind each
    other or behind a writer (with one shared connection, 32 concurrent `/incident list` acks waited
    in line). On PostgreSQL, reads take a pooled connection.

    Writes made by the timers' leader are fenced (`fenced`): each checks, in its own transaction,
    that the lease's token is still the one the leader took, so a leader that was paused past its
    lease and woke up after another took over cannot claim or send anything.
    """

    def __init__(self, path: str, busy_timeout_s: float = 30.0) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._local = threading.local()
        self._gate = _WriteGate()
        self._readers: list[sqlite3.Connection] = []
        self._postgres: PostgresBackend | None = None
        self.dialect = "postgresql" if is_postgres_url(path) else "sqlite"
        if self.dialect == "postgresql":
            self._postgres = PostgresBackend(path, timeout_s=busy_timeout_s)
            self._postgres.migrate(migrations())
            return
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the driver's implicit ones.
        # busy_timeout_s: how long a write waits for another process's lock before it raises.
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_s)
        self.db = sqlite_utils.Database(conn)
        with self._lock:
            if path != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            migrate_sqlite_baseline(self.db)
            migrate_sqlite(self.db, migrations())

    @property
    def schema_version(self) -> int:
        return int(self._rows("SELECT max(version) AS v FROM schema_version")[0]["v"] or 0)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction; the lock keeps threads from interleaving on the connection."""
        with self._gate.turn(urgent=getattr(self._local, "urgent", False)), self._lock:
            if self._postgres is not None:
                with self._postgres.transaction() as tx:
                    self._check_fence(tx)
                    yield tx
                return
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                self._check_fence(self.db)
                yield self.db
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            else:
                self.db.conn.execute("COMMIT")

    @contextmanager
    def fenced(self, token: int) -> Iterator[None]:
        """Writes this thread makes in the block are the leader's: each fails with `LeaseLost`,
        writing nothing, once the lease's token is no longer `token`."""
        outer = getattr(self._local, "fence", None)
        self._local.fence = token
        try:
            yield
        finally:
            self._local.fence = outer

    def _check_fence(self, db: Tx) -> None:
        token = getattr(self._local, "fence", None)
        if token is None:
            return
        rows = list(db.query("SELECT token, holder FROM leases WHERE name = ?", [LEASE]))
        if not rows or int(rows[0]["token"]) != token:
            holder = rows[0]["holder"] if rows else "nobody"
            raise LeaseLost(f"the lease's token is no longer {token}: {holder} has taken over")

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Writes made in this block (a request Slack is waiting on) go before background writes."""
        self._local.urgent = True
        try:
            yield
        finally:
            self._local.urgent = False

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        if self._postgres is not None:
            return self._postgres.rows(sql, params)
        if self.path == ":memory:":  # one private database: it can only be read through the writer
            with self._lock:
                return list(self.db.query(sql, params))
        cursor = self._reader().execute(sql, params)
        columns = [d[0] for d in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor]

    def _reader(self) -> sqlite3.Connection:
        reader: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            # check_same_thread=False only so close() may close it; each thread reads its own.
            reader = sqlite3.connect(
                self.path, isolation_level=None, timeout=self.busy_timeout_s, check_same_thread=False
            )
            reader.execute("PRAGMA query_only=1")
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    def ping(self) -> bool:
        try:
            return self._rows("SELECT 1 AS ok")[0]["ok"] == 1
        except Exception:  # noqa: BLE001 - any failure to read means the store is not usable
            return False

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
            return
        with self._lock:
            for reader in self._readers:
                reader.close()
            self.db.close()

    # -- internals: the writes every part shares -------------------------------------------

    def _get_in(self, db: Tx, number: int) -> Incident:
        rows = list(db.query("SELECT * FROM incidents WHERE number = ?", [number]))
        if not rows:
            raise KeyError(number)
        return _incident(rows[0])

    def _write(self, db: Tx, old: Incident, new: Incident) -> bool:
        values = {k: _to_db(getattr(new, k)) for k in _INCIDENT_COLUMNS if k != "number"}
        assignments = ", ".join(f"{k} = ?" for k in values)
        cursor = db.execute(
            f"UPDATE incidents SET {assignments} WHERE number = ? AND version = ?",
            [*values.values(), old.number, old.version],
        )
        return cursor.rowcount == 1

    @staticmethod
    def _event(db: Tx, number: int, at: datetime, kind: str, actor: str, text: str) -> None:
        db.execute(
            "INSERT INTO timeline (incident, at, kind, actor, text) VALUES (?, ?, ?, ?, ?)",
            [number, _to_db(at), kind, actor, text],
        )

    @staticmethod
    def _audit(
        db: Tx,
        number: int | None,
        at: datetime,
        actor: str,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        db.execute(
            "INSERT INTO audit (incident, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            [
                number,
                _to_db(at),
                actor,
                action,
                json.dumps(detail, ensure_ascii=False, default=str),
            ],
        )


class _WriteGate:
    """Whose write goes next: a request Slack is waiting on beats background work (pages, set-up).

    Without it, an ack's one short insert queued behind every background transaction of the
    moment, each of which can be paused mid-way by the interpreter's thread switching.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._depth = 0
        self._urgent_waiting = 0

    @contextmanager
    def turn(self, urgent: bool) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:  # re-entry by the owner passes straight through
                if urgent:
                    self._urgent_waiting += 1
                try:
                    self._cond.wait_for(lambda: self._owner is None and (urgent or self._urgent_waiting == 0))
                finally:
                    if urgent:
                        self._urgent_waiting -= 1
                self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._cond.notify_all()


def _incident(row: dict[str, Any]) -> Incident:
    values = dict(row)
    for key in _DATETIME_FIELDS:
        values[key] = _from_db_datetime(values.get(key))
    values["war_room_briefed"] = bool(values.get("war_room_briefed"))
    return Incident(**values)
