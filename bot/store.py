"""SQLite store: the truth about incidents. All SQL lives here, behind domain verbs.

One connection shared by Bolt's worker threads and the scheduler thread, serialised by a lock;
every write is one `BEGIN IMMEDIATE` transaction, so a state change, its timeline line and its
audit record land together or not at all. WAL keeps readers (health checks, `list`) cheap.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

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
        self._lock = threading.RLock()
        with self._lock:
            if path != ":memory:":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self._migrate()

    def _migrate(self) -> None:
        self.db["incidents"].create(
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
                "version": int,
            },
            pk="number",
            not_null=["title", "severity", "status", "commander", "declared_by", "declared_at"],
            defaults={"war_room_briefed": 0, "version": 0},
            if_not_exists=True,
        )
        self.db["incidents"].create_index(["status"], if_not_exists=True)
        self.db["incidents"].create_index(["war_room_id"], if_not_exists=True)
        self.db["timeline"].create(
            {"id": int, "incident": int, "at": str, "kind": str, "actor": str, "text": str},
            pk="id",
            if_not_exists=True,
        )
        self.db["timeline"].create_index(["incident", "at"], if_not_exists=True)
        self.db["audit"].create(
            {"id": int, "incident": int, "at": str, "actor": str, "action": str, "detail": str},
            pk="id",
            if_not_exists=True,
        )
        self.db["audit"].create_index(["incident"], if_not_exists=True)

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One write transaction; the lock keeps threads from interleaving on the connection."""
        with self._lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
            else:
                self.db.conn.execute("COMMIT")

    def _rows(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.db.query(sql, params))

    # -- incidents -------------------------------------------------------------------------

    def create_incident(self, draft: Incident, now: datetime) -> Incident:
        """Number and store a declared incident, with its first timeline line and audit record."""
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
        return incident

    def get(self, number: int) -> Incident | None:
        rows = self._rows("SELECT * FROM incidents WHERE number = ?", [number])
        return _incident(rows[0]) if rows else None

    def open_incidents(self) -> list[Incident]:
        return [
            _incident(r)
            for r in self._rows(
                "SELECT * FROM incidents WHERE status != 'resolved' ORDER BY number"
            )
        ]

    def incidents_since(self, since: datetime) -> list[Incident]:
        rows = self._rows(
            "SELECT * FROM incidents WHERE declared_at >= ? ORDER BY number", [_to_db(since)]
        )
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
        return [
            Event(r["incident"], datetime.fromisoformat(r["at"]), r["kind"], r["actor"], r["text"])
            for r in rows
        ]

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

    def count_incidents(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM incidents")[0]["n"])

    def ping(self) -> bool:
        try:
            return self._rows("SELECT 1 AS ok")[0]["ok"] == 1
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self.db.close()

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
    def _event(
        db: sqlite_utils.Database, number: int, at: datetime, kind: str, actor: str, text: str
    ) -> None:
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


def _incident(row: dict[str, Any]) -> Incident:
    values = dict(row)
    for key in _DATETIME_FIELDS:
        values[key] = _from_db_datetime(values.get(key))
    values["war_room_briefed"] = bool(values.get("war_room_briefed"))
    return Incident(**values)
