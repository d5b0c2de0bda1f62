"""SQLite store: the truth about incidents. All SQL lives here, behind domain verbs.

Writes go through one connection shared by Bolt's worker threads and the scheduler, serialised
by a lock; every write is one `BEGIN IMMEDIATE` transaction, so a state change, its timeline
line and its audit record land together or not at all. Reads use a read-only connection per
thread: in WAL mode they see every committed write and never queue behind each other or behind
a writer (with one shared connection, 32 concurrent `/incident list` acks waited in line).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from bot.escalation import Firing
from bot.incidents import Change, Incident
from bot.mrkdwn import escape

_DATETIME_FIELDS = {f.name for f in fields(Incident) if "datetime" in str(f.type)}
_INCIDENT_COLUMNS = [f.name for f in fields(Incident)]


@dataclass(frozen=True)
class Event:
    """A timeline line: what happened, who did it, when."""

    incident: int
    at: datetime
    kind: str
    actor: str
    text: str


@dataclass(frozen=True)
class DeliveryRecord:
    """A message the bot owes (a page, an FYI, a warning) and how far its sending got."""

    id: int
    incident: int
    firing_key: str
    kind: str
    target: str
    detail: str
    status: str  # pending | sending | sent | cancelled
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    user: str | None
    channel: str | None
    ts: str | None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Attempt:
    """A post that was about to be made: where, when, and under which thread."""

    channel: str
    at: datetime
    thread_ts: str | None


@dataclass(frozen=True)
class AuditRecord:
    incident: int
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


def _to_db(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _from_db_datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    def __init__(self, path: str) -> None:
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the driver's implicit ones.
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db = sqlite_utils.Database(conn)
        self.path = path
        self._lock = threading.RLock()
        self._local = threading.local()
        self._gate = _WriteGate()
        self._readers: list[sqlite3.Connection] = []
        with self._lock:
            if path != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self._migrate()

    def _migrate(self) -> None:
        self.db.table("incidents").create(
            {
                "number": int,
                "title": str,
                "severity": str,
                "status": str,
                "commander": str,
                "declared_by": str,
                "declared_at": str,
                "last_update_at": str,
                "acknowledged_at": str,
                "acknowledged_by": str,
                "resolved_at": str,
                "resolved_by": str,
                "summary": str,
                "scribe": str,
                "comms": str,
                "announcement_channel": str,
                "announcement_ts": str,
                "war_room_id": str,
                "war_room_name": str,
                "war_room_briefed": int,
                "snoozed_until": str,
                "fix_started_at": str,
                "statuspage_id": str,
                "version": int,
            },
            pk="number",
            not_null=["title", "severity", "status", "commander", "declared_by", "declared_at"],
            defaults={"war_room_briefed": 0, "version": 0},
            if_not_exists=True,
        )
        # Columns added after the first release: older databases get them here.
        existing = self.db.table("incidents").columns_dict
        for column in ("snoozed_until", "fix_started_at", "statuspage_id"):
            if column not in existing:
                self.db.table("incidents").add_column(column, str)
        self.db.table("incidents").create_index(["status"], if_not_exists=True)
        self.db.table("incidents").create_index(["war_room_id"], if_not_exists=True)
        self.db.table("timeline").create(
            {"id": int, "incident": int, "at": str, "kind": str, "actor": str, "text": str},
            pk="id",
            if_not_exists=True,
        )
        self.db.table("timeline").create_index(["incident", "at"], if_not_exists=True)
        self.db.table("audit").create(
            {"id": int, "incident": int, "at": str, "actor": str, "action": str, "detail": str},
            pk="id",
            if_not_exists=True,
        )
        self.db.table("audit").create_index(["incident"], if_not_exists=True)
        # One row per thing that came due: the primary key is what makes "fires once" true.
        self.db.table("firings").create(
            {"incident": int, "key": str, "fired_at": str},
            pk=("incident", "key"),
            if_not_exists=True,
        )
        self.db.table("deliveries").create(
            {
                "id": int,
                "incident": int,
                "firing_key": str,
                "kind": str,
                "target": str,
                "detail": str,
                "status": str,
                "attempts": int,
                "next_attempt_at": str,
                "last_error": str,
                "user": str,
                "channel": str,
                "ts": str,
                "thread_ts": str,
                "created_at": str,
                "sent_at": str,
            },
            pk="id",
            defaults={"status": "pending", "attempts": 0},
            if_not_exists=True,
        )
        self.db.table("deliveries").create_index(["status", "next_attempt_at"], if_not_exists=True)
        self.db.table("deliveries").create_index(["incident"], if_not_exists=True)
        # Posts under way: if the process dies mid-post, start-up asks Slack whether it landed.
        self.db.table("attempts").create(
            {"key": str, "channel": str, "at": str, "thread_ts": str}, pk="key", if_not_exists=True
        )
        # Columns added after the first release: older databases get them here.
        for table, column in (("attempts", "thread_ts"), ("deliveries", "thread_ts")):
            if column not in self.db.table(table).columns_dict:
                self.db.table(table).add_column(column, str)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; the lock keeps threads from interleaving on the connection."""
        with self._gate.turn(urgent=getattr(self._local, "urgent", False)), self._lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            else:
                self.db.conn.execute("COMMIT")

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Writes made in this block (a request Slack is waiting on) go before background writes."""
        self._local.urgent = True
        try:
            yield
        finally:
            self._local.urgent = False

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
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
            reader = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            reader.execute("PRAGMA query_only=1")
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    # -- incidents -------------------------------------------------------------------------

    def create_incident(self, draft: Incident, now: datetime, firings: tuple[Firing, ...] = ()) -> Incident:
        """Number and store a declared incident, with its first timeline line, its audit record and
        any firings decided at declare (the status page), all in one transaction."""
        row = {k: _to_db(v) for k, v in vars(draft).items() if k != "number"}
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO incidents ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            incident = replace(draft, number=int(cursor.lastrowid or 0))
            text = f"<@{draft.declared_by}> declared {incident.ref} ({draft.severity}): {escape(draft.title)}"
            self._event(db, incident.number, now, "declare", draft.declared_by, text)
            self._audit(
                db,
                incident.number,
                now,
                draft.declared_by,
                "declare",
                {"severity": draft.severity, "title": draft.title},
            )
            for firing in firings:
                self._record_firing(db, incident.number, firing, now)
        return incident

    def get(self, number: int) -> Incident | None:
        rows = self._rows("SELECT * FROM incidents WHERE number = ?", [number])
        return _incident(rows[0]) if rows else None

    def open_incidents(self) -> list[Incident]:
        return [_incident(r) for r in self._rows("SELECT * FROM incidents WHERE status != 'resolved' ORDER BY number")]

    def incidents_since(self, since: datetime) -> list[Incident]:
        rows = self._rows("SELECT * FROM incidents WHERE declared_at >= ? ORDER BY number", [_to_db(since)])
        return [_incident(r) for r in rows]

    def by_war_room(self, channel_id: str) -> Incident | None:
        rows = self._rows("SELECT * FROM incidents WHERE war_room_id = ?", [channel_id])
        return _incident(rows[0]) if rows else None

    def apply(self, change: Change, now: datetime, *, old: Incident) -> Incident | None:
        """Persist a decided change if nobody changed the incident meanwhile; None on conflict.

        The version check makes double clicks and Slack's retries safe: the loser re-reads and
        its domain call sees the change already made.
        """
        new = replace(change.incident, version=old.version + 1)
        diff = {
            k: {"from": _to_db(getattr(old, k)), "to": _to_db(getattr(new, k))}
            for k in _INCIDENT_COLUMNS
            if k != "version" and getattr(old, k) != getattr(new, k)
        }
        with self.transaction() as db:
            updated = self._write(db, old, new)
            if not updated:
                return None
            self._event(db, new.number, now, change.kind, change.actor, change.text)
            self._audit(db, new.number, now, change.actor, change.kind, diff)
        return new

    def change(
        self, incident: Incident, decide: Callable[[Incident], Change | None], now: datetime
    ) -> tuple[Change | None, Incident]:
        """Decide a change from the incident's state and persist it; decide again on a conflict.

        Returns (the change, the incident as saved), or (None, the current incident) when the
        decision was that nothing needs doing: the second click, the retried request.
        """
        while True:
            change = decide(incident)
            if change is None:
                return None, incident
            saved = self.apply(change, now, old=incident)
            if saved is not None:
                return change, saved
            current = self.get(incident.number)
            if current is None:
                raise KeyError(f"INC-{incident.number} disappeared")
            incident = current

    def record_setup(self, number: int, now: datetime, **values: Any) -> Incident:
        """Facts learnt while setting an incident up in Slack (announcement ts, war room id)."""
        with self.transaction() as db:
            current = self._get_in(db, number)
            new = replace(current, **values, version=current.version + 1)
            self._write(db, current, new)
            self._audit(db, number, now, "bot", "setup", {k: _to_db(v) for k, v in values.items()})
        return new

    def add_event(self, number: int, now: datetime, kind: str, actor: str, text: str) -> None:
        with self.transaction() as db:
            self._event(db, number, now, kind, actor, text)
            self._audit(db, number, now, actor, kind, {"text": text})

    def timeline(self, number: int) -> list[Event]:
        rows = self._rows("SELECT * FROM timeline WHERE incident = ? ORDER BY at, id", [number])
        return [Event(r["incident"], datetime.fromisoformat(r["at"]), r["kind"], r["actor"], r["text"]) for r in rows]

    def audit_log(self, number: int) -> list[AuditRecord]:
        rows = self._rows("SELECT * FROM audit WHERE incident = ? ORDER BY id", [number])
        return [
            AuditRecord(
                r["incident"],
                datetime.fromisoformat(r["at"]),
                r["actor"],
                r["action"],
                json.loads(r["detail"]),
            )
            for r in rows
        ]

    # -- timers: firings and deliveries ----------------------------------------------------

    def fired_keys(self, number: int) -> frozenset[str]:
        return frozenset(r["key"] for r in self._rows("SELECT key FROM firings WHERE incident = ?", [number]))

    def claim(
        self,
        number: int,
        decide: Callable[[Incident, frozenset[str]], list[Firing]],
        now: datetime,
    ) -> list[Firing]:
        """Decide what is due and record it as fired, in one transaction.

        Deciding inside the transaction means an ack committed a moment earlier is seen, and two
        threads deciding at once cannot both claim the same key.
        """
        with self.transaction() as db:
            rows = list(db.query("SELECT * FROM incidents WHERE number = ?", [number]))
            if not rows:
                return []
            incident = _incident(rows[0])
            fired = frozenset(r["key"] for r in db.query("SELECT key FROM firings WHERE incident = ?", [number]))
            return [firing for firing in decide(incident, fired) if self._record_firing(db, number, firing, now)]

    def record_firing(self, number: int, firing: Firing, now: datetime) -> bool:
        """Record a firing decided outside the timers (a manual page); False if it already fired."""
        with self.transaction() as db:
            return self._record_firing(db, number, firing, now)

    def _record_firing(self, db: sqlite_utils.Database, number: int, firing: Firing, now: datetime) -> bool:
        cursor = db.execute(
            "INSERT OR IGNORE INTO firings (incident, key, fired_at) VALUES (?, ?, ?)",
            [number, firing.key, _to_db(now)],
        )
        if cursor.rowcount != 1:
            return False
        for delivery in firing.deliveries:
            db.execute(
                "INSERT INTO deliveries (incident, firing_key, kind, target, detail, status, attempts,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)",
                [
                    number,
                    firing.key,
                    delivery.kind,
                    delivery.target,
                    delivery.detail,
                    _to_db(now),
                    _to_db(now),
                ],
            )
        self._audit(
            db,
            number,
            now,
            "bot",
            "fired",
            {"key": firing.key, "deliveries": len(firing.deliveries)},
        )
        return True

    def due_deliveries(self, now: datetime, limit: int = 100) -> list[DeliveryRecord]:
        rows = self._rows(
            "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY id LIMIT ?",
            [_to_db(now), limit],
        )
        return [_delivery(r) for r in rows]

    def next_delivery_at(self) -> datetime | None:
        rows = self._rows("SELECT min(next_attempt_at) AS at FROM deliveries WHERE status = 'pending'")
        return _from_db_datetime(rows[0]["at"]) if rows else None

    def start_delivery(self, delivery_id: int, now: datetime) -> bool:
        """pending -> sending, if it is due; False if another thread took it or it waits for a retry.

        Checking the due time here, not only when listing, keeps a stale copy of the row (queued
        before a failed attempt rescheduled it) from retrying at once, again and again.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = 'sending' WHERE id = ? AND status = 'pending' AND next_attempt_at <= ?",
                [delivery_id, _to_db(now)],
            )
            return cursor.rowcount == 1

    def finish_delivery(
        self,
        delivery_id: int,
        now: datetime,
        *,
        user: str | None,
        channel: str | None,
        ts: str | None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?, user = ?, channel = ?, ts = ?,"
                " attempts = attempts + 1, last_error = NULL WHERE id = ?",
                [_to_db(now), user, channel, ts, delivery_id],
            )

    def retry_delivery(self, delivery_id: int, error: str, at: datetime) -> int:
        """Back to pending, to be tried again at `at`; returns how many attempts have failed."""
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'pending', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE id = ?",
                [error, _to_db(at), delivery_id],
            )
            return int(next(db.query("SELECT attempts FROM deliveries WHERE id = ?", [delivery_id]))["attempts"])

    def cancel_delivery(self, delivery_id: int, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'cancelled', last_error = ? WHERE id = ?",
                [reason, delivery_id],
            )

    def resume_delivery(self, delivery_id: int) -> None:
        """A delivery caught mid-send by a crash, which Slack says never arrived: send it again."""
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'pending' WHERE id = ? AND status = 'sending'",
                [delivery_id],
            )

    def deliveries(self, number: int, kind: str | None = None, status: str | None = None) -> list[DeliveryRecord]:
        sql = "SELECT * FROM deliveries WHERE incident = ?"
        params: list[Any] = [number]
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if status:
            sql += " AND status = ?"
            params.append(status)
        return [_delivery(r) for r in self._rows(sql + " ORDER BY id", params)]

    def note_attempt(self, key: str, channel: str, now: datetime, thread_ts: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO attempts (key, channel, at, thread_ts) VALUES (?, ?, ?, ?)",
                [key, channel, _to_db(now), thread_ts],
            )

    def attempt(self, key: str) -> Attempt | None:
        rows = self._rows("SELECT channel, at, thread_ts FROM attempts WHERE key = ?", [key])
        if not rows:
            return None
        return Attempt(rows[0]["channel"], datetime.fromisoformat(rows[0]["at"]), rows[0]["thread_ts"])

    def known_announcement_channel(self) -> str | None:
        rows = self._rows(
            "SELECT announcement_channel FROM incidents WHERE announcement_ts IS NOT NULL ORDER BY number DESC LIMIT 1"
        )
        return rows[0]["announcement_channel"] if rows else None

    def set_delivery_channel(
        self, delivery_id: int, channel: str, user: str | None, thread_ts: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET channel = ?, user = ?, thread_ts = ? WHERE id = ?",
                [channel, user, thread_ts, delivery_id],
            )

    def interrupted_deliveries(self) -> list[DeliveryRecord]:
        return [_delivery(r) for r in self._rows("SELECT * FROM deliveries WHERE status = 'sending' ORDER BY id")]

    def count_incidents(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM incidents")[0]["n"])

    def ping(self) -> bool:
        try:
            return self._rows("SELECT 1 AS ok")[0]["ok"] == 1
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self.db.close()

    # -- telemetry -------------------------------------------------------------------------

    def delivery_backlog(self) -> tuple[int, datetime | None]:
        """How many deliveries are not yet accepted (pending or being sent), and the oldest's birth."""
        row = self._rows(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM deliveries WHERE status IN ('pending', 'sending')"
        )[0]
        return int(row["n"]), _from_db_datetime(row["oldest"])

    # -- internals -------------------------------------------------------------------------

    def _get_in(self, db: sqlite_utils.Database, number: int) -> Incident:
        rows = list(db.query("SELECT * FROM incidents WHERE number = ?", [number]))
        if not rows:
            raise KeyError(number)
        return _incident(rows[0])

    def _write(self, db: sqlite_utils.Database, old: Incident, new: Incident) -> bool:
        values = {k: _to_db(getattr(new, k)) for k in _INCIDENT_COLUMNS if k != "number"}
        assignments = ", ".join(f"{k} = ?" for k in values)
        cursor = db.execute(
            f"UPDATE incidents SET {assignments} WHERE number = ? AND version = ?",
            [*values.values(), old.number, old.version],
        )
        return cursor.rowcount == 1

    @staticmethod
    def _event(db: sqlite_utils.Database, number: int, at: datetime, kind: str, actor: str, text: str) -> None:
        db.execute(
            "INSERT INTO timeline (incident, at, kind, actor, text) VALUES (?, ?, ?, ?, ?)",
            [number, _to_db(at), kind, actor, text],
        )

    @staticmethod
    def _audit(
        db: sqlite_utils.Database,
        number: int,
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


def _delivery(row: dict[str, Any]) -> DeliveryRecord:
    values = {k: row[k] for k in (f.name for f in fields(DeliveryRecord))}
    values["next_attempt_at"] = datetime.fromisoformat(row["next_attempt_at"])
    values["detail"] = row["detail"] or ""
    return DeliveryRecord(**values)


def _incident(row: dict[str, Any]) -> Incident:
    values = dict(row)
    for key in _DATETIME_FIELDS:
        values[key] = _from_db_datetime(values.get(key))
    values["war_room_briefed"] = bool(values.get("war_room_briefed"))
    return Incident(**values)
