"""Firings, deliveries and attempts: what came due, what it owes Slack, and how sending it went.

A firing's row is what makes "fires once" true, and it is recorded with its deliveries in one
transaction (`claim`, `record_firing`, `firing_writer` for a change's own transaction). Then the
delivery loop's verbs (due, start, finish, retry, cancel, resume, the urgent ones first), the
posts under way that start-up asks Slack about (`note_attempt`, `attempt`), the status page's
ordered calls (`drop_pending_delivery`) and the backlog the telemetry reports.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from bot.domain.deliveries import NOT_PLACED_YET, Firing
from bot.domain.incidents import Incident
from bot.domain.records import Attempt, DeliveryRecord
from bot.store.base import StoreBase, _from_db_datetime, _incident, _to_db
from bot.store.sqlite import Tx


class DeliveriesPart(StoreBase):
    """Firings, deliveries and attempts."""

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

    def record_firing_unless_recent(
        self, number: int, firing: Firing, now: datetime, prefix: str, within: timedelta
    ) -> datetime | None:
        """Record `firing` unless a firing whose key starts with `prefix` was recorded less than
        `within` ago (checked and recorded in one transaction, so two at once record one).

        None when recorded; otherwise when the recent one fired.
        """
        with self.transaction() as db:
            rows = db.query("SELECT key, fired_at FROM firings WHERE incident = ?", [number])
            times = [_from_db_datetime(r["fired_at"]) for r in rows if str(r["key"]).startswith(prefix)]
            recent = [at for at in times if at is not None and now - at < within]
            if recent:
                return max(recent)
            self._record_firing(db, number, firing, now)
            return None

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
                    _to_db(now + delivery.after),
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
        """When the next pending delivery is due, or the next claim of one being sent lapses (its
        sender may have died: it is to be looked up then), leaving out `excluding` (those this
        process is sending)."""
        ids = sorted(excluding)
        skip = f" AND id NOT IN ({', '.join('?' for _ in ids)})" if ids else ""
        rows = self._rows(
            f"SELECT min(at) AS at FROM (SELECT next_attempt_at AS at FROM deliveries WHERE status = 'pending'{skip}"
            f" UNION ALL SELECT claim_until AS at FROM deliveries WHERE status = 'sending'"
            f" AND claim_until IS NOT NULL{skip}) due",
            [*ids, *ids],
        )
        return _from_db_datetime(rows[0]["at"]) if rows else None

    def start_delivery(
        self, delivery_id: int, now: datetime, *, holder: str = "", until: datetime | None = None
    ) -> bool:
        """pending -> sending, if it is due; False if another thread took it or it waits for a retry.

        The claim records who sends it (`holder`) and until when (`until`, the sending deadline):
        nobody else takes it, or asks Slack whether it landed, before then (`take_over_delivery`).
        Checking the due time here, not only when listing, keeps a stale copy of the row (queued
        before a failed attempt rescheduled it) from retrying at once, again and again.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET status = 'sending', claimed_by = ?, claim_until = ?"
                " WHERE id = ? AND status = 'pending' AND next_attempt_at <= ?",
                [holder or None, _to_db(until), delivery_id, _to_db(now)],
            )
            return cursor.rowcount == 1

    def take_over_delivery(
        self, delivery_id: int, now: datetime, *, holder: str, until: datetime, dead_holder: bool = False
    ) -> bool:
        """Claim a delivery left `sending` whose sending deadline has passed (its sender died, froze
        or gave up): False while the deadline runs, or if another instance took it over first.
        `dead_holder`: its holder is known to be dead (SQLite's predecessor), unless it is `holder`
        itself: taken over without waiting for the deadline."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET claimed_by = ?, claim_until = ? WHERE id = ? AND status = 'sending'"
                " AND (claim_until IS NULL OR claim_until <= ? OR (? AND coalesce(claimed_by, '') != ?))",
                [holder or None, _to_db(until), delivery_id, _to_db(now), bool(dead_holder), holder or ""],
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

    def retry_delivery(self, delivery_id: int, error: str, at: datetime, *, claim: datetime | None = None) -> int:
        """Back to pending, to be tried again at `at`; returns how many attempts have failed.

        With `claim` (the sending deadline its sender claimed it with), only if that claim is still
        the delivery's: a sender that overran its deadline, whose delivery another has taken over
        since, changes nothing (and 0 is returned)."""
        with self.transaction() as db:
            sql = (
                "UPDATE deliveries SET status = 'pending', attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE id = ?"
            )
            params: list[Any] = [error, _to_db(at), delivery_id]
            if claim is not None:
                sql += " AND status = 'sending' AND claim_until = ?"
                params.append(_to_db(claim))
            if db.execute(sql, params).rowcount != 1:
                return 0
            return int(next(db.query("SELECT attempts FROM deliveries WHERE id = ?", [delivery_id]))["attempts"])

    def defer_delivery(self, delivery_id: int, at: datetime, *, claim: datetime | None = None) -> None:
        """Back to pending until `at`, not counted as a failed attempt: the bot's own pacing held it
        back before it reached Slack (no token for its method or channel yet). With `claim`, only
        while that claim is still the delivery's (as `retry_delivery`)."""
        with self.transaction() as db:
            sql = "UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ? AND status = 'sending'"
            params: list[Any] = [_to_db(at), delivery_id]
            if claim is not None:
                sql += " AND claim_until = ?"
                params.append(_to_db(claim))
            db.execute(sql, params)

    def last_delivery_id(self, number: int, kind: str) -> int:
        """The newest committed delivery of `kind` for the incident (0 if none), whatever its status."""
        rows = self._rows("SELECT max(id) AS id FROM deliveries WHERE incident = ? AND kind = ?", [number, kind])
        return int(rows[0]["id"] or 0) if rows else 0

    def retry_unplaced(self, number: int, now: datetime) -> int:
        """Deliveries of the incident that waited for its announcement or war room, due now.

        Only those (their `last_error` starts with NOT_PLACED_YET): never one waiting out a
        receiver's `Retry-After` (RATELIMITED, a status page's 429), which must not go sooner.
        """
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE deliveries SET next_attempt_at = ? WHERE incident = ? AND status = 'pending'"
                " AND next_attempt_at > ? AND last_error LIKE ?",
                [_to_db(now), number, _to_db(now), f"{NOT_PLACED_YET}%"],
            )
            return int(cursor.rowcount)

    def cancel_delivery(self, delivery_id: int, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE deliveries SET status = 'cancelled', last_error = ? WHERE id = ?",
                [reason, delivery_id],
            )

    def supersede_delivery(self, delivery_id: int, by: int, *, claim: datetime | None = None) -> bool:
        """An edit being sent, replaced by a later edit of the same message (`by`) before it went:
        marked superseded (neither sent nor failed). With `claim`, only while that claim is still
        the delivery's (as `retry_delivery`); False if it was not (then nothing changed)."""
        with self.transaction() as db:
            sql = "UPDATE deliveries SET status = 'superseded', last_error = ? WHERE id = ? AND status = 'sending'"
            params: list[Any] = [f"superseded by delivery {by}", delivery_id]
            if claim is not None:
                sql += " AND claim_until = ?"
                params.append(_to_db(claim))
            return db.execute(sql, params).rowcount == 1

    def resume_delivery(self, delivery_id: int, *, claim: datetime | None = None) -> None:
        """A delivery caught mid-send by a crash, which Slack says never arrived: send it again
        (with `claim`, only if the delivery is still claimed with that deadline)."""
        with self.transaction() as db:
            sql = "UPDATE deliveries SET status = 'pending' WHERE id = ? AND status = 'sending'"
            params: list[Any] = [delivery_id]
            if claim is not None:
                sql += " AND claim_until = ?"
                params.append(_to_db(claim))
            db.execute(sql, params)

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

    def pages_in_message(self, channel: str, ts: str) -> list[DeliveryRecord]:
        """The pages sent as one message (a page digest holds several; a page alone, one)."""
        rows = self._rows(
            "SELECT * FROM deliveries WHERE kind = 'page' AND status = 'sent' AND channel = ? AND ts = ? ORDER BY id",
            [channel, ts],
        )
        return [_delivery(r) for r in rows]

    def note_attempt(self, key: str, channel: str, now: datetime, thread_ts: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO attempts (key, channel, at, thread_ts) VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE"
                " SET channel = excluded.channel, at = excluded.at, thread_ts = excluded.thread_ts",
                [key, channel, _to_db(now), thread_ts],
            )

    def note_posted(self, key: str, channel: str, ts: str, now: datetime) -> None:
        """Where a message posted once under `key` landed, so later edits need no history search.
        Kept beside the attempts (`posted:<key>`, the message's ts in `thread_ts`)."""
        self.note_attempt(f"posted:{key}", channel, now, ts)

    def posted(self, key: str) -> tuple[str, str] | None:
        """(channel, ts) of the message posted once under `key`, if it is known to have landed."""
        found = self.attempt(f"posted:{key}")
        return (found.channel, found.thread_ts) if found is not None and found.thread_ts else None

    def attempt(self, key: str) -> Attempt | None:
        rows = self._rows("SELECT channel, at, thread_ts FROM attempts WHERE key = ?", [key])
        if not rows:
            return None
        return Attempt(rows[0]["channel"], datetime.fromisoformat(rows[0]["at"]), rows[0]["thread_ts"])

    def set_delivery_channel(
        self, delivery_id: int, channel: str, user: str | None, thread_ts: str | None = None
    ) -> None:
        with self.transaction() as db:
            db.execute(
                'UPDATE deliveries SET channel = ?, "user" = ?, thread_ts = ? WHERE id = ?',
                [channel, user, thread_ts, delivery_id],
            )

    def interrupted_deliveries(self, now: datetime | None = None) -> list[DeliveryRecord]:
        """Deliveries left `sending`; with `now`, only those whose sending deadline has passed."""
        if now is None:
            return [_delivery(r) for r in self._rows("SELECT * FROM deliveries WHERE status = 'sending' ORDER BY id")]
        rows = self._rows(
            "SELECT * FROM deliveries WHERE status = 'sending' AND (claim_until IS NULL OR claim_until <= ?) ORDER BY id",
            [_to_db(now)],
        )
        return [_delivery(r) for r in rows]

    def delivery_claim(self, delivery_id: int) -> tuple[str | None, datetime | None]:
        """Who claimed the delivery to send it, and until when."""
        rows = self._rows("SELECT claimed_by, claim_until FROM deliveries WHERE id = ?", [delivery_id])
        if not rows:
            return None, None
        return rows[0]["claimed_by"], _from_db_datetime(rows[0]["claim_until"])

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

    def delivery_backlog(self, kinds: Collection[str] | None = None) -> tuple[int, datetime | None]:
        """How many deliveries are not yet accepted (pending or being sent), and the oldest's birth;
        of `kinds` only when given (the heartbeat looks at pages), of every kind otherwise."""
        sql = "SELECT count(*) AS n, min(created_at) AS oldest FROM deliveries WHERE status IN ('pending', 'sending')"
        params: list[Any] = []
        if kinds is not None:
            sql += f" AND kind IN ({', '.join('?' for _ in kinds)})" if kinds else " AND 1 = 0"
            params = list(kinds)
        row = self._rows(sql, params)[0]
        return int(row["n"]), _from_db_datetime(row["oldest"])

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


def _delivery(row: dict[str, Any]) -> DeliveryRecord:
    values = {k: row[k] for k in (f.name for f in fields(DeliveryRecord))}
    values["next_attempt_at"] = datetime.fromisoformat(row["next_attempt_at"])
    values["detail"] = row["detail"] or ""
    return DeliveryRecord(**values)
