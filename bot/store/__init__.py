"""The store: the truth about incidents. All SQL lives here, behind domain verbs.

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

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from bot.domain.alerts import Alert, attached_line, closed_line
from bot.domain.deliveries import Firing
from bot.domain.incidents import Change, Incident, declared_line
from bot.domain.policy import AlertRoute
from bot.domain.proposals import Proposal, Verdict, cancelled_outcome
from bot.domain.records import (
    AlertReceipt,
    AlertRecord,
    Attempt,
    AuditRecord,
    DeliveryRecord,
    Draft,
    Event,
    FollowUp,
    HandoffNotice,
    Lease,
    Resolution,
    StatRow,
)
from bot.domain.schedules import Override
from bot.store.migrations import migrations
from bot.store.postgres import PostgresBackend, is_postgres_url
from bot.store.sqlite import Tx, migrate_sqlite

log = logging.getLogger(__name__)

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


def open_store(url: str, busy_timeout_s: float = 30.0) -> Store:
    """A SQLite file (a path, or :memory:) or a PostgreSQL database (a postgresql:// URL)."""
    return Store(url, busy_timeout_s)


class Store:
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
            self._migrate()
            migrate_sqlite(self.db, migrations())

    @property
    def schema_version(self) -> int:
        return int(self._rows("SELECT max(version) AS v FROM schema_version")[0]["v"] or 0)

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
        self._migrate_schedules()
        self._migrate_proposals()
        self._migrate_review()
        self._migrate_alerts()

    def _migrate_schedules(self) -> None:
        # Overrides are never deleted: clearing one stamps it, so the table is its own history.
        self.db.table("oncall_overrides").create(
            {
                "id": int,
                "schedule": str,
                "user": str,
                "starts_at": str,
                "ends_at": str,
                "created_by": str,
                "created_at": str,
                "cleared_by": str,
                "cleared_at": str,
            },
            pk="id",
            if_not_exists=True,
        )
        self.db.table("oncall_overrides").create_index(["schedule", "ends_at"], if_not_exists=True)
        # One row per schedule and handoff instant: the primary key is what makes "noticed once" true.
        self.db.table("handoffs").create(
            {"schedule": str, "at": str, "claimed_at": str}, pk=("schedule", "at"), if_not_exists=True
        )
        # The DMs a handoff owes (the incoming and the outgoing person), sent until Slack accepts them.
        self.db.table("handoff_notices").create(
            {"id": int, "schedule": str, "at": str, "side": str, "user": str, "text": str, "sent_at": str},
            pk="id",
            if_not_exists=True,
        )

    def _migrate_proposals(self) -> None:
        # Proposed production changes: the row is what makes "sent at most once" true.
        self.db.table("proposals").create(
            {
                "id": int,
                "incident": int,
                "kind": str,
                "target": str,
                "current": str,
                "serving_revision": str,
                "pinned": int,
                "proposer": str,
                "created_at": str,
                "status": str,
                "outcome": str,
                "move_traffic": int,
                "confirmed_by": str,
                "confirmed_at": str,
                "finished_at": str,
                "channel": str,
                "ts": str,
            },
            pk="id",
            not_null=["incident", "kind", "target", "proposer", "created_at", "status"],
            defaults={"status": "pending", "outcome": "", "pinned": 0, "move_traffic": 0},
            if_not_exists=True,
        )
        self.db.table("proposals").create_index(["status"], if_not_exists=True)

    def _migrate_alerts(self) -> None:
        if "detected_at" not in self.db.table("incidents").columns_dict:
            self.db.table("incidents").add_column("detected_at", str)
        self.db.table("alerts").create(
            {
                "id": int,
                "source": str,
                "alert_id": str,
                "group_key": str,
                "policy": str,
                "condition": str,
                "summary": str,
                "url": str,
                "labels": str,
                "severity": str,
                "action": str,
                "started_at": str,
                "ended_at": str,
                "received_at": str,
                "last_seen_at": str,
                "notifications": int,
                "closed_at": str,
                "incident": int,
                "proposal_channel": str,
                "proposal_ts": str,
                "dismissed_by": str,
                "link_noted": int,
                "close_noted": int,
            },
            pk="id",
            not_null=["source", "alert_id", "policy", "action", "started_at", "received_at"],
            defaults={"notifications": 1, "link_noted": 0, "close_noted": 0},
            if_not_exists=True,
        )
        # The same alert can be open only once: two deliveries of it racing in cannot both be new.
        self.db.execute(
            "CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_once ON alerts (source, alert_id) WHERE closed_at IS NULL"
        )
        self.db.table("alerts").create_index(["incident"], if_not_exists=True)
        self.db.table("alerts").create_index(["source", "group_key"], if_not_exists=True)

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

    # -- incidents -------------------------------------------------------------------------

    def create_incident(
        self, draft: Incident, now: datetime, firings: tuple[Firing, ...] = (), alerts: tuple[int, ...] = ()
    ) -> Incident:
        """Number and store a declared incident, with its first timeline line, its audit record and
        any firings decided at declare (the status page), all in one transaction.

        `alerts` are the alerts it is declared for: linked in the same transaction, or, if one of
        them already has an incident, nothing is stored and `AlertTaken` says which.
        """
        row = {k: _to_db(v) for k, v in vars(draft).items() if k != "number"}
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO incidents ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) RETURNING number",
                list(row.values()),
            )
            incident = replace(draft, number=int(cursor.fetchone()[0]))
            self._event(db, incident.number, now, "declare", draft.declared_by, declared_line(incident))
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
            for alert in alerts:
                self._link_alert(db, alert, incident.number)
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

    def apply(
        self,
        change: Change,
        now: datetime,
        *,
        old: Incident,
        also: Callable[[Tx, Incident], None] | None = None,
    ) -> Incident | None:
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
            if also is not None:
                also(db, new)
        return new

    def change(
        self,
        incident: Incident,
        decide: Callable[[Incident], Change | None],
        now: datetime,
        also: Callable[[Tx, Incident], None] | None = None,
    ) -> tuple[Change | None, Incident]:
        """Decide a change from the incident's state and persist it; decide again on a conflict.

        Returns (the change, the incident as saved), or (None, the current incident) when the
        decision was that nothing needs doing: the second click, the retried request. `also`
        writes what belongs with the change (a resolution's details, the firings it starts) in
        its transaction, and only if the change itself is written.
        """
        while True:
            change = decide(incident)
            if change is None:
                return None, incident
            saved = self.apply(change, now, old=incident, also=also)
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

    def audit_log(self, number: int | None) -> list[AuditRecord]:
        """An incident's audit records, or (None) those about no incident: refusals, on-call overrides."""
        if number is None:
            rows = self._rows("SELECT * FROM audit WHERE incident IS NULL ORDER BY id")
        else:
            rows = self._rows("SELECT * FROM audit WHERE incident = ? ORDER BY id", [number])
        return [_audit_record(r) for r in rows]

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

    def _record_firing(self, db: Tx, number: int, firing: Firing, now: datetime) -> bool:
        cursor = db.execute(
            "INSERT INTO firings (incident, key, fired_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
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

    def next_delivery_at(self, excluding: Collection[int] = ()) -> datetime | None:
        """When the next pending delivery is due, leaving out `excluding` (those being sent)."""
        ids = sorted(excluding)
        skip = f" AND id NOT IN ({', '.join('?' for _ in ids)})" if ids else ""
        rows = self._rows(f"SELECT min(next_attempt_at) AS at FROM deliveries WHERE status = 'pending'{skip}", ids)
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
                "UPDATE deliveries SET status = 'sent', sent_at = ?, \"user\" = ?, channel = ?, ts = ?,"
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
                "INSERT INTO attempts (key, channel, at, thread_ts) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET channel = excluded.channel, at = excluded.at, thread_ts = excluded.thread_ts",
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
                'UPDATE deliveries SET channel = ?, "user" = ?, thread_ts = ? WHERE id = ?',
                [channel, user, thread_ts, delivery_id],
            )

    def interrupted_deliveries(self) -> list[DeliveryRecord]:
        return [_delivery(r) for r in self._rows("SELECT * FROM deliveries WHERE status = 'sending' ORDER BY id")]

    def count_incidents(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM incidents")[0]["n"])

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

    # -- permissions -----------------------------------------------------------------------

    def record_refusal(self, now: datetime, user: str, action: str, incident: int | None, tried: str) -> None:
        """An audit record of something a user was not allowed to do; `incident` None when there was none."""
        with self.transaction() as db:
            self._audit(db, incident, now, user, "refused", {"action": action, "tried": tried})

    def refusals(self, incident: int | None = None) -> list[AuditRecord]:
        """Refusals for one incident, or (None) those made with no incident at hand."""
        where = "incident = ?" if incident is not None else "incident IS NULL"
        params = [incident] if incident is not None else []
        rows = self._rows(f"SELECT * FROM audit WHERE action = 'refused' AND {where} ORDER BY id", params)
        return [_audit_record(r) for r in rows]

    # -- on-call schedules ----------------------------------------------------------------
    # Audit records about schedules are about no incident: their incident is NULL, like refusals'.

    def overrides(self, schedule: str | None = None, *, ending_after: datetime | None = None) -> list[Override]:
        """Overrides (of one schedule), those still running or to come after `ending_after`."""
        sql = "SELECT * FROM oncall_overrides WHERE 1 = 1"
        params: list[Any] = []
        if schedule is not None:
            sql += " AND schedule = ?"
            params.append(schedule)
        rows = [_override(r) for r in self._rows(sql + " ORDER BY id", params)]
        return [o for o in rows if ending_after is None or o.effective_end > ending_after]

    def add_override(
        self, schedule: str, user: str, ends_at: datetime, *, by: str, now: datetime
    ) -> tuple[Override, bool]:
        """Put `user` on call for `schedule` from now until `ends_at`; (the override, whether it is new).

        It ends any override of the schedule in force, so one is in force at a time. The same
        request made twice (a double submit, a retry) within a minute is recognised, not repeated.
        """
        with self.transaction() as db:
            current = [
                _override(r)
                for r in db.query("SELECT * FROM oncall_overrides WHERE schedule = ? ORDER BY id", [schedule])
            ]
            running = [o for o in current if o.in_force(now)]
            for o in running:
                if o.user == user and o.created_by == by and abs((o.ends_at - ends_at).total_seconds()) < 60:
                    return o, False
            for o in running:
                db.execute(
                    "UPDATE oncall_overrides SET cleared_by = ?, cleared_at = ? WHERE id = ?",
                    [by, _to_db(now), o.id],
                )
            cursor = db.execute(
                'INSERT INTO oncall_overrides (schedule, "user", starts_at, ends_at, created_by, created_at)'
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                [schedule, user, _to_db(now), _to_db(ends_at), by, _to_db(now)],
            )
            override = Override(int(cursor.fetchone()[0]), schedule, user, now, ends_at, by, now)
            self._audit(
                db,
                None,
                now,
                by,
                "oncall_override",
                {"schedule": schedule, "user": user, "until": _to_db(ends_at), "replaced": [o.id for o in running]},
            )
        return override, True

    def clear_override(self, schedule: str, *, by: str, now: datetime) -> list[Override]:
        """End the overrides of `schedule` in force or to come; the ones ended (none the second time)."""
        with self.transaction() as db:
            rows = db.query("SELECT * FROM oncall_overrides WHERE schedule = ? ORDER BY id", [schedule])
            ending = [o for o in map(_override, rows) if o.effective_end > now]
            for o in ending:
                db.execute(
                    "UPDATE oncall_overrides SET cleared_by = ?, cleared_at = ? WHERE id = ?",
                    [by, _to_db(now), o.id],
                )
            if ending:
                self._audit(
                    db, None, now, by, "oncall_override_clear", {"schedule": schedule, "ids": [o.id for o in ending]}
                )
        return [replace(o, cleared_by=by, cleared_at=now) for o in ending]

    def claim_handoff(self, schedule: str, at: datetime, notices: list[tuple[str, str, str]], now: datetime) -> bool:
        """Record that the handoff of `schedule` at `at` was noticed, with the DMs it owes
        ((side, user, text) each), in one transaction; False if it was already claimed."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO handoffs (schedule, at, claimed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [schedule, _to_db(at), _to_db(now)],
            )
            if cursor.rowcount != 1:
                return False
            for side, user, text in notices:
                db.execute(
                    'INSERT INTO handoff_notices (schedule, at, side, "user", text) VALUES (?, ?, ?, ?, ?)',
                    [schedule, _to_db(at), side, user, text],
                )
            self._audit(db, None, now, "bot", "handoff", {"schedule": schedule, "at": _to_db(at)})
        return True

    def pending_handoff_notices(self) -> list[HandoffNotice]:
        rows = self._rows("SELECT * FROM handoff_notices WHERE sent_at IS NULL ORDER BY id")
        return [
            HandoffNotice(r["id"], r["schedule"], datetime.fromisoformat(r["at"]), r["side"], r["user"], r["text"])
            for r in rows
        ]

    def finish_handoff_notice(self, notice_id: int, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE handoff_notices SET sent_at = ? WHERE id = ?", [_to_db(now), notice_id])

    # -- proposals -------------------------------------------------------------------------

    def create_proposal(self, draft: Proposal, now: datetime, text: str) -> Proposal:
        """Store a new pending proposal with its timeline line and audit record."""
        row = {k: _to_db(v) for k, v in vars(draft).items() if k != "id"}
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO proposals ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) RETURNING id",
                list(row.values()),
            )
            proposal = replace(draft, id=int(cursor.fetchone()[0]))
            self._event(db, draft.incident, now, f"{draft.action}-proposed", draft.proposer, text)
            self._audit(
                db,
                draft.incident,
                now,
                draft.proposer,
                f"{draft.action}-proposed",
                {"proposal": proposal.id, "kind": draft.kind, "target": draft.target, "current": draft.current},
            )
        return proposal

    def get_proposal(self, proposal_id: int) -> Proposal | None:
        rows = self._rows("SELECT * FROM proposals WHERE id = ?", [proposal_id])
        return _proposal(rows[0]) if rows else None

    def proposals(self, status: str | None = None) -> list[Proposal]:
        if status is None:
            return [_proposal(r) for r in self._rows("SELECT * FROM proposals ORDER BY id")]
        return [_proposal(r) for r in self._rows("SELECT * FROM proposals WHERE status = ? ORDER BY id", [status])]

    def set_proposal_message(self, proposal_id: int, channel: str, ts: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE proposals SET channel = ?, ts = ? WHERE id = ?", [channel, ts, proposal_id])

    def start_proposal(
        self,
        proposal_id: int,
        decide: Callable[[Proposal], Verdict],
        now: datetime,
        *,
        user: str,
        move_traffic: bool = False,
    ) -> tuple[Verdict, Proposal]:
        """Decide a confirm click and, if it may start, mark the proposal executing: one
        transaction, so of two clicks at once exactly one gets `start`. An expired proposal is
        marked expired on the way."""
        with self.transaction() as db:
            rows = list(db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id]))
            if not rows:
                raise KeyError(proposal_id)
            proposal = _proposal(rows[0])
            verdict = decide(proposal)
            if verdict.outcome == "expired" and proposal.status == "pending":
                db.execute(
                    "UPDATE proposals SET status = 'expired', finished_at = ? WHERE id = ?", [_to_db(now), proposal_id]
                )
                proposal = replace(proposal, status="expired", finished_at=now)
            if verdict.start:
                db.execute(
                    "UPDATE proposals SET status = 'executing', confirmed_by = ?, confirmed_at = ?, move_traffic = ?"
                    " WHERE id = ? AND status = 'pending'",
                    [user, _to_db(now), int(move_traffic), proposal_id],
                )
                proposal = replace(
                    proposal, status="executing", confirmed_by=user, confirmed_at=now, move_traffic=move_traffic
                )
                self._audit(
                    db,
                    proposal.incident,
                    now,
                    user,
                    f"{proposal.action}-confirmed",
                    {
                        "proposal": proposal_id,
                        "kind": proposal.kind,
                        "target": proposal.target,
                        "move_traffic": move_traffic,
                    },
                )
        return verdict, proposal

    def cancel_proposal(self, proposal_id: int, now: datetime, *, user: str, text: str) -> tuple[bool, Proposal]:
        """pending -> cancelled; (False, the proposal as it is) when it was no longer pending."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE proposals SET status = 'cancelled', finished_at = ?, outcome = ? WHERE id = ? AND status = 'pending'",
                [_to_db(now), cancelled_outcome(user), proposal_id],
            )
            rows = list(db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id]))
            if not rows:
                raise KeyError(proposal_id)
            proposal = _proposal(rows[0])
            if cursor.rowcount == 1:
                self._event(db, proposal.incident, now, f"{proposal.action}-cancelled", user, text)
                self._audit(db, proposal.incident, now, user, f"{proposal.action}-cancelled", {"proposal": proposal_id})
        return cursor.rowcount == 1, proposal

    def finish_proposal(
        self, proposal_id: int, status: str, outcome: str, now: datetime, *, actor: str, text: str
    ) -> Proposal:
        """executing -> succeeded | failed | unknown, with the outcome on the timeline and in the audit."""
        with self.transaction() as db:
            db.execute(
                "UPDATE proposals SET status = ?, outcome = ?, finished_at = ? WHERE id = ? AND status = 'executing'",
                [status, outcome, _to_db(now), proposal_id],
            )
            proposal = _proposal(next(db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id])))
            self._event(db, proposal.incident, now, f"{proposal.action}-{status}", actor, text)
            self._audit(
                db,
                proposal.incident,
                now,
                actor,
                f"{proposal.action}-{status}",
                {"proposal": proposal_id, "kind": proposal.kind, "target": proposal.target, "outcome": outcome},
            )
        return proposal

    def record_audit(self, number: int, now: datetime, actor: str, action: str, detail: dict[str, Any]) -> None:
        """An audit record with no timeline line (a refused click)."""
        with self.transaction() as db:
            self._audit(db, number, now, actor, action, detail)

    # -- review: notes, pins, follow-ups, resolution details, post-mortem drafts, stats -----

    def _migrate_review(self) -> None:
        # A pinned message is captured once per incident, however often the reaction comes.
        self.db.table("pinned_messages").create(
            {"incident": int, "channel": str, "ts": str, "pinned_at": str},
            pk=("incident", "channel", "ts"),
            if_not_exists=True,
        )
        self.db.table("followups").create(
            {"id": int, "incident": int, "at": str, "actor": str, "text": str}, pk="id", if_not_exists=True
        )
        self.db.table("followups").create_index(["incident"], if_not_exists=True)
        self.db.table("resolutions").create(
            {
                "incident": int,
                "at": str,
                "actor": str,
                "summary": str,
                "root_cause": str,
                "customer_impact": str,
            },
            pk="incident",
            if_not_exists=True,
        )
        self.db.table("postmortems").create(
            {
                "incident": int,
                "markdown": str,
                "generated_at": str,
                "file_id": str,
                "permalink": str,
                "channel": str,
            },
            pk="incident",
            if_not_exists=True,
        )
        # Stats read a window of declares; the index keeps that a range scan however long the history.
        self.db.table("incidents").create_index(["declared_at"], if_not_exists=True)

    def add_pinned(
        self, number: int, channel: str, ts: str, at: datetime, actor: str, text: str, now: datetime
    ) -> bool:
        """A war-room message captured into the timeline at its own time; False if it already was."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO pinned_messages (incident, channel, ts, pinned_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [number, channel, ts, _to_db(now)],
            )
            if cursor.rowcount != 1:
                return False
            self._event(db, number, at, "pin", actor, text)
            self._audit(db, number, now, actor, "pin", {"channel": channel, "ts": ts})
        return True

    def add_followup(self, number: int, now: datetime, actor: str, text: str, line: str) -> int:
        """A follow-up action for the post-mortem, and its timeline line, together."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO followups (incident, at, actor, text) VALUES (?, ?, ?, ?) RETURNING id",
                [number, _to_db(now), actor, text],
            )
            followup = int(cursor.fetchone()[0])
            self._event(db, number, now, "followup", actor, line)
            self._audit(db, number, now, actor, "followup", {"text": text})
            return followup

    def followups(self, number: int) -> list[FollowUp]:
        rows = self._rows("SELECT * FROM followups WHERE incident = ? ORDER BY id", [number])
        return [FollowUp(r["id"], r["incident"], datetime.fromisoformat(r["at"]), r["actor"], r["text"]) for r in rows]

    def resolve(
        self,
        incident: Incident,
        decide: Callable[[Incident], Change | None],
        now: datetime,
        details: Resolution,
        firings: Callable[[Incident], tuple[Firing, ...]] = lambda _: (),
    ) -> tuple[Change | None, Incident]:
        """Resolve with what the resolver said (summary, root cause, impact) and the firings the
        resolution starts (the draft's upload), all in the state change's transaction."""

        def also(db: Tx, new: Incident) -> None:
            db.execute(
                "INSERT INTO resolutions (incident, at, actor, summary, root_cause, customer_impact)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (incident) DO UPDATE SET at = excluded.at, actor = excluded.actor,"
                " summary = excluded.summary, root_cause = excluded.root_cause, customer_impact = excluded.customer_impact",
                [new.number, _to_db(now), details.actor, details.summary, details.root_cause, details.customer_impact],
            )
            for firing in firings(new):
                self._record_firing(db, new.number, firing, now)

        return self.change(incident, decide, now, also=also)

    def resolution(self, number: int) -> Resolution | None:
        rows = self._rows("SELECT * FROM resolutions WHERE incident = ?", [number])
        if not rows:
            return None
        r = rows[0]
        return Resolution(r["actor"], r["summary"], r["root_cause"], r["customer_impact"])

    def save_draft(self, number: int, markdown: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO postmortems (incident, markdown, generated_at) VALUES (?, ?, ?)"
                " ON CONFLICT(incident) DO UPDATE SET markdown = excluded.markdown, generated_at = excluded.generated_at,"
                # The earlier upload is of the earlier text: the new one is recorded once it is made.
                " file_id = NULL, permalink = NULL, channel = NULL",
                [number, markdown, _to_db(now)],
            )

    def record_draft_upload(self, number: int, file_id: str, permalink: str | None, channel: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE postmortems SET file_id = ?, permalink = ?, channel = ? WHERE incident = ?",
                [file_id, permalink, channel, number],
            )

    def draft(self, number: int) -> Draft | None:
        rows = self._rows("SELECT * FROM postmortems WHERE incident = ?", [number])
        if not rows:
            return None
        r = rows[0]
        return Draft(
            r["incident"],
            r["markdown"],
            datetime.fromisoformat(r["generated_at"]),
            r["file_id"],
            r["permalink"],
            r["channel"],
        )

    def pages_sent(self, number: int) -> list[tuple[str, datetime]]:
        """Who was paged for the incident and when each page reached them, in that order."""
        rows = self._rows(
            'SELECT coalesce("user", target) AS who, sent_at FROM deliveries'
            " WHERE incident = ? AND kind = 'page' AND status = 'sent' AND sent_at IS NOT NULL ORDER BY sent_at, id",
            [number],
        )
        return [(str(r["who"]), datetime.fromisoformat(r["sent_at"])) for r in rows]

    def resolved_since(self, since: datetime, severities: tuple[str, ...]) -> list[int]:
        """Incidents resolved since `since` in these severities: those a post-mortem reminder may await."""
        if not severities:
            return []
        marks = ", ".join("?" for _ in severities)
        rows = self._rows(
            f"SELECT number FROM incidents WHERE status = 'resolved' AND resolved_at >= ? AND severity IN ({marks})",
            [_to_db(since), *severities],
        )
        return [int(r["number"]) for r in rows]

    def stat_rows(self, since: datetime) -> list[StatRow]:
        """The timings of every incident declared since `since`: a range scan of the declared_at index."""
        rows = self._rows(
            "SELECT number, severity, declared_at, acknowledged_at, resolved_at, detected_at FROM incidents"
            " WHERE declared_at >= ? ORDER BY declared_at",
            [_to_db(since)],
        )
        return [
            StatRow(
                r["number"],
                r["severity"],
                datetime.fromisoformat(r["declared_at"]),
                _from_db_datetime(r["acknowledged_at"]),
                _from_db_datetime(r["resolved_at"]),
                _from_db_datetime(r["detected_at"]),
            )
            for r in rows
        ]

    # -- alerts ----------------------------------------------------------------------------

    def record_alerts(self, received: list[tuple[Alert, AlertRoute]], now: datetime) -> list[AlertReceipt]:
        """Record a delivery's alerts in one transaction and say what each one is to us.

        `new`: first seen, to be declared, proposed or ignored as routed; `attached`: first
        seen, and joined to the open incident of its group; `repeat`: still firing, already
        known; `closed`: it was open and has closed now; `stale`: nothing to do (a closing for
        an alert never seen open, or a late copy of one already closed).
        """
        receipts = []
        with self.transaction() as db:
            for alert, route in received:
                receipts.append(self._record_alert(db, alert, route, now))
        return receipts

    def _record_alert(self, db: Tx, alert: Alert, route: AlertRoute, now: datetime) -> AlertReceipt:
        open_rows = list(
            db.query(
                "SELECT * FROM alerts WHERE source = ? AND alert_id = ? AND closed_at IS NULL",
                [alert.source, alert.alert_id],
            )
        )
        if open_rows:
            row = open_rows[0]
            if alert.is_open:
                db.execute(
                    "UPDATE alerts SET last_seen_at = ?, notifications = notifications + 1, summary = ? WHERE id = ?",
                    [_to_db(now), alert.summary or row["summary"], row["id"]],
                )
                return AlertReceipt(self._alert_in(db, row["id"]), "repeat")
            ended = alert.ended_at or now
            db.execute(
                "UPDATE alerts SET closed_at = ?, ended_at = ?, last_seen_at = ? WHERE id = ?",
                [_to_db(now), _to_db(ended), _to_db(now), row["id"]],
            )
            record = self._alert_in(db, row["id"])
            if record.incident is not None:
                self._event(db, record.incident, ended, "alert_closed", "bot", closed_line(record, ended))
            return AlertReceipt(record, "closed")
        if not alert.is_open:
            return AlertReceipt(None, "stale")
        seen = list(
            db.query(
                "SELECT id FROM alerts WHERE source = ? AND alert_id = ? AND started_at = ?",
                [alert.source, alert.alert_id, _to_db(alert.started_at)],
            )
        )
        if seen:  # a late copy of an alert that has since closed
            return AlertReceipt(self._alert_in(db, seen[0]["id"]), "stale")
        incident = self._group_incident(db, alert) if route.action != "ignore" else None
        cursor = db.execute(
            "INSERT INTO alerts (source, alert_id, group_key, policy, condition, summary, url, labels, severity,"
            " action, started_at, received_at, last_seen_at, notifications, incident)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
            [
                alert.source,
                alert.alert_id,
                alert.group_key,
                alert.policy,
                alert.condition,
                alert.summary,
                alert.url,
                json.dumps(alert.labels, ensure_ascii=False),
                route.severity,
                route.action,
                _to_db(alert.started_at),
                _to_db(now),
                _to_db(now),
                incident,
            ],
        )
        record = self._alert_in(db, int(cursor.fetchone()[0]))
        if incident is not None:
            self._event(db, incident, alert.started_at, "alert", "bot", attached_line(record))
            return AlertReceipt(record, "attached")
        return AlertReceipt(record, "new")

    def _group_incident(self, db: Tx, alert: Alert) -> int | None:
        """The open incident an open alert of the same group is attached to, if any."""
        if not alert.group_key:
            return None
        rows = list(
            db.query(
                "SELECT a.incident FROM alerts a JOIN incidents i ON i.number = a.incident"
                " WHERE a.source = ? AND a.group_key = ? AND a.closed_at IS NULL AND i.status != 'resolved'"
                " ORDER BY a.id DESC LIMIT 1",
                [alert.source, alert.group_key],
            )
        )
        return int(rows[0]["incident"]) if rows else None

    def _link_alert(self, db: Tx, alert_id: int, number: int) -> None:
        cursor = db.execute("UPDATE alerts SET incident = ? WHERE id = ? AND incident IS NULL", [number, alert_id])
        if cursor.rowcount != 1:
            rows = list(db.query("SELECT incident FROM alerts WHERE id = ?", [alert_id]))
            raise AlertTaken(alert_id, rows[0]["incident"] if rows else None)
        record = self._alert_in(db, alert_id)
        self._event(db, number, record.started_at, "alert", "bot", attached_line(record))

    def open_group_alerts(self, record: AlertRecord) -> list[AlertRecord]:
        """The other open alerts of the alert's group that have no incident yet (and are not
        dismissed or ignored): declared together, they become one incident."""
        if not record.group_key:
            return []
        rows = self._rows(
            "SELECT * FROM alerts WHERE source = ? AND group_key = ? AND id != ? AND closed_at IS NULL"
            " AND incident IS NULL AND dismissed_by IS NULL AND action != 'ignore' ORDER BY id",
            [record.source, record.group_key, record.id],
        )
        return [_alert(r) for r in rows]

    def alert(self, alert_id: int) -> AlertRecord | None:
        rows = self._rows("SELECT * FROM alerts WHERE id = ?", [alert_id])
        return _alert(rows[0]) if rows else None

    def alerts_of(self, number: int) -> list[AlertRecord]:
        return [_alert(r) for r in self._rows("SELECT * FROM alerts WHERE incident = ? ORDER BY id", [number])]

    def unsettled_alerts(self) -> list[AlertRecord]:
        """Alerts whose Slack side is not done: to declare, to propose, to link, or to close."""
        rows = self._rows(
            "SELECT * FROM alerts WHERE"
            " (closed_at IS NULL AND incident IS NULL AND dismissed_by IS NULL"
            "   AND (action = 'declare' OR (action = 'propose' AND proposal_ts IS NULL)))"
            " OR (incident IS NOT NULL AND link_noted = 0)"
            " OR (closed_at IS NOT NULL AND close_noted = 0 AND (incident IS NOT NULL OR proposal_ts IS NOT NULL))"
            " ORDER BY id"
        )
        return [_alert(r) for r in rows]

    def note_alert(self, alert_id: int, **values: Any) -> AlertRecord:
        """Facts learnt while showing an alert in Slack (the proposal's ts, lines posted)."""
        allowed = {"proposal_channel", "proposal_ts", "link_noted", "close_noted"}
        assert set(values) <= allowed, set(values) - allowed
        with self.transaction() as db:
            assignments = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE alerts SET {assignments} WHERE id = ?", [*map(_to_db, values.values()), alert_id])
            return self._alert_in(db, alert_id)

    def dismiss_alert(self, alert_id: int, by: str) -> tuple[bool, AlertRecord | None]:
        """Dismiss a proposal; False (and the alert as it is) when it was declared or dismissed already."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE alerts SET dismissed_by = ? WHERE id = ? AND incident IS NULL AND dismissed_by IS NULL",
                [by, alert_id],
            )
            rows = list(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))
            return cursor.rowcount == 1, (_alert(rows[0]) if rows else None)

    def _alert_in(self, db: Tx, alert_id: int) -> AlertRecord:
        return _alert(next(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id])))

    # -- status page: ordered calls -------------------------------------------------------

    def drop_pending_delivery(self, delivery_id: int, reason: str) -> bool:
        """Cancel a delivery only if nobody has started sending it; False if it is under way."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = 'cancelled', last_error = ? WHERE id = ? AND status = 'pending'",
                [reason, delivery_id],
            )
            return cursor.rowcount == 1

    # -- telemetry -------------------------------------------------------------------------

    def delivery_backlog(self) -> tuple[int, datetime | None]:
        """How many deliveries are not yet accepted (pending or being sent), and the oldest's birth."""
        row = self._rows(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM deliveries WHERE status IN ('pending', 'sending')"
        )[0]
        return int(row["n"]), _from_db_datetime(row["oldest"])

    # -- performance (README: Performance; the indexes are migration 3) ------------------------

    def open_overview(self, severity_order: Sequence[str], limit: int) -> tuple[list[Incident], dict[str, int]]:
        """`/incident list` without loading every open incident: the `limit` most severe (in
        `severity_order`, then oldest first) and how many are open per severity."""
        rank = " ".join(f"WHEN ? THEN {i}" for i in range(len(severity_order)))
        order = f"CASE severity {rank} ELSE {len(severity_order)} END, " if severity_order else ""
        rows = self._rows(
            f"SELECT * FROM incidents WHERE status != 'resolved' ORDER BY {order}number LIMIT ?",
            [*severity_order, limit + 1],
        )
        shown = [_incident(r) for r in rows[:limit]]
        counts: dict[str, int] = {}
        if len(rows) <= limit:  # all of them: counted here, without a second query on the ack path
            for incident in shown:
                counts[incident.severity] = counts.get(incident.severity, 0) + 1
            return shown, counts
        counts = {
            str(r["severity"]): int(r["n"])
            for r in self._rows(
                "SELECT severity, count(*) AS n FROM incidents WHERE status != 'resolved' GROUP BY severity"
            )
        }
        return shown, counts

    # -- leadership: the timers' lease ------------------------------------------------------
    # Times are the database's clock, so instances whose clocks disagree still agree on expiry.

    @property
    def _clock_sql(self) -> str:
        if self.dialect == "postgresql":
            return "extract(epoch from clock_timestamp())::float8"
        return "(julianday('now') - 2440587.5) * 86400.0"

    def _db_now(self, db: Tx) -> float:
        return float(next(db.query(f"SELECT {self._clock_sql} AS now"))["now"])

    def acquire_lease(self, holder: str, ttl_s: float, *, force: bool = False) -> Lease | None:
        """Take the lease if nobody holds it or it has expired (or `force`): a new fencing token.
        None while another holder's lease runs."""
        with self.transaction() as db:
            now = self._db_now(db)
            rows = list(db.query("SELECT * FROM leases WHERE name = ?", [LEASE]))
            if rows and not force and float(rows[0]["expires_at"]) > now and rows[0]["holder"] != holder:
                return None
            token = int(rows[0]["token"]) + 1 if rows else 1
            db.execute(
                "INSERT INTO leases (name, holder, token, acquired_at, renewed_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,"
                " acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at, expires_at = excluded.expires_at",
                [LEASE, holder, token, now, now, now + ttl_s],
            )
            previous = rows[0]["holder"] if rows else None
            detail = {"holder": holder, "token": token, "previous": previous}
            self._audit(db, None, datetime.fromtimestamp(now, UTC), holder, "lease_taken", detail)
            return Lease(holder, token, now, now, now + ttl_s, now)

    def renew_lease(self, holder: str, token: int, ttl_s: float) -> Lease | None:
        """Extend the lease this holder took with `token`; None if another has taken it since."""
        with self.transaction() as db:
            now = self._db_now(db)
            cursor = db.execute(
                "UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
                [now, now + ttl_s, LEASE, holder, token],
            )
            if cursor.rowcount != 1:
                return None
            row = next(db.query("SELECT * FROM leases WHERE name = ?", [LEASE]))
            return _lease(row, now)

    def release_lease(self, holder: str, token: int) -> None:
        """Let the lease expire now (a clean stop), so a standby takes over at its next look."""
        with self.transaction() as db:
            now = self._db_now(db)
            db.execute(
                "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ? AND token = ?",
                [now, LEASE, holder, token],
            )

    def lease(self) -> Lease | None:
        """The lease as it stands, whoever holds it."""
        rows = self._rows(f"SELECT *, {self._clock_sql} AS db_now FROM leases WHERE name = ?", [LEASE])
        return _lease(rows[0], float(rows[0]["db_now"])) if rows else None

    def notify_work(self, number: int | None = None, at: datetime | None = None) -> None:
        """Tell the leader (on another instance) there is work: an incident to re-plan (or, with
        `at`, to look at by then at the latest), or deliveries to send."""
        if self._postgres is not None:
            payload = "" if number is None else str(number)
            self._postgres.notify(f"{payload}@{_to_db(at)}" if at is not None else payload)

    def listen_for_work(
        self, on_work: Callable[[int | None, datetime | None], None], stopping: threading.Event
    ) -> bool:
        """Call `on_work` for each `notify_work` of any instance until `stopping`; False on SQLite,
        where there is no other instance to hear from."""
        if self._postgres is None:
            return False

        def on_notice(payload: str) -> None:
            number, _, at = payload.partition("@")
            try:
                on_work(int(number) if number.isdecimal() else None, _from_db_datetime(at))
            except ValueError:
                log.warning("ignored a malformed work notice %r", payload[:100])

        self._postgres.listen(on_notice, stopping)
        return True

    # -- follow-ups: what a change owes Slack ----------------------------------------------

    def firing_writer(
        self, firings: Callable[[Incident], Iterable[Firing]], now: datetime
    ) -> Callable[[Tx, Incident], None]:
        """An `also` for `change`: the firings the saved incident owes (its announcement edit,
        its lines in Slack), recorded in the change's own transaction, so a crash right after
        the change cannot lose them."""

        def also(db: Tx, new: Incident) -> None:
            for firing in firings(new):
                self._record_firing(db, new.number, firing, now)

        return also

    def urgent_due_deliveries(self, now: datetime, kinds: Collection[str]) -> list[DeliveryRecord]:
        """Due deliveries of `kinds` (pages): listed first, so no backlog of others hides them."""
        marks = ", ".join("?" for _ in kinds)
        rows = self._rows(
            f"SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ? AND kind IN ({marks})"
            " ORDER BY id LIMIT 100",
            [_to_db(now), *kinds],
        )
        return [_delivery(r) for r in rows]

    # -- internals -------------------------------------------------------------------------

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


def _lease(row: dict[str, Any], now: float) -> Lease:
    return Lease(
        row["holder"],
        int(row["token"]),
        float(row["acquired_at"]),
        float(row["renewed_at"]),
        float(row["expires_at"]),
        now,
    )


def _audit_record(row: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        row["incident"], datetime.fromisoformat(row["at"]), row["actor"], row["action"], json.loads(row["detail"])
    )


def _override(row: dict[str, Any]) -> Override:
    return Override(
        id=row["id"],
        schedule=row["schedule"],
        user=row["user"],
        starts_at=datetime.fromisoformat(row["starts_at"]),
        ends_at=datetime.fromisoformat(row["ends_at"]),
        created_by=row["created_by"],
        created_at=datetime.fromisoformat(row["created_at"]),
        cleared_by=row["cleared_by"],
        cleared_at=_from_db_datetime(row["cleared_at"]),
    )


def _delivery(row: dict[str, Any]) -> DeliveryRecord:
    values = {k: row[k] for k in (f.name for f in fields(DeliveryRecord))}
    values["next_attempt_at"] = datetime.fromisoformat(row["next_attempt_at"])
    values["detail"] = row["detail"] or ""
    return DeliveryRecord(**values)


def _proposal(row: dict[str, Any]) -> Proposal:
    values = {k: row[k] for k in (f.name for f in fields(Proposal))}
    for key in ("created_at", "confirmed_at", "finished_at"):
        values[key] = _from_db_datetime(values[key])
    values["pinned"] = bool(values["pinned"])
    values["move_traffic"] = bool(values["move_traffic"])
    values["outcome"] = values["outcome"] or ""
    values["current"] = values["current"] or ""
    values["serving_revision"] = values["serving_revision"] or ""
    return Proposal(**values)


class AlertTaken(Exception):
    """An incident was about to be declared for an alert that already has one."""

    def __init__(self, alert_id: int, incident: int | None) -> None:
        super().__init__(f"alert {alert_id} already belongs to INC-{incident}")
        self.alert_id = alert_id
        self.incident = incident


def _alert(row: dict[str, Any]) -> AlertRecord:
    values = {k: row[k] for k in (f.name for f in fields(AlertRecord))}
    for key in ("started_at", "ended_at", "received_at", "last_seen_at", "closed_at"):
        values[key] = _from_db_datetime(row[key])
    values["labels"] = json.loads(row["labels"] or "{}")
    values["summary"] = row["summary"] or ""
    values["condition"] = row["condition"] or ""
    values["group_key"] = row["group_key"] or ""
    values["notifications"] = int(row["notifications"] or 1)
    values["link_noted"] = bool(row["link_noted"])
    values["close_noted"] = bool(row["close_noted"])
    return AlertRecord(**values)


def _incident(row: dict[str, Any]) -> Incident:
    values = dict(row)
    for key in _DATETIME_FIELDS:
        values[key] = _from_db_datetime(values.get(key))
    values["war_room_briefed"] = bool(values.get("war_room_briefed"))
    return Incident(**values)
