"""Leadership: the timers' lease (take, renew, release, read) and the work notices between instances.

The lease says who runs the timers and the delivery loop; its times are the database's clock,
so instances whose clocks disagree still agree on expiry, and every takeover increases the
fencing token that `StoreBase.fenced` checks. On PostgreSQL, `notify_work` and `listen_for_work`
tell the leader on another instance there is work (NOTIFY/LISTEN); on SQLite there is no other
instance to tell.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bot.domain.records import Lease
from bot.store.base import LEASE, StoreBase, _from_db_datetime, _to_db
from bot.store.sqlite import Tx

# The logger's name is the one these warnings have always had (they were logged by bot.store).
log = logging.getLogger("bot.store")


class LeasePart(StoreBase):
    """The timers' lease and the work notices.

    Times are the database's clock, so instances whose clocks disagree still agree on expiry.
    """

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

    def remember_request(self, key: str, window_s: float) -> bool:
        """True the first time any instance sees `key` (a signed request) within `window_s`
        seconds by the database's clock; older memories are forgotten on the way."""
        with self.urgent(), self.transaction() as db:
            now = self._db_now(db)
            db.execute("DELETE FROM seen_requests WHERE at < ?", [now - window_s])
            cursor = db.execute("INSERT INTO seen_requests (key, at) VALUES (?, ?) ON CONFLICT DO NOTHING", [key, now])
            return cursor.rowcount == 1

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


def _lease(row: dict[str, Any], now: float) -> Lease:
    return Lease(
        row["holder"],
        int(row["token"]),
        float(row["acquired_at"]),
        float(row["renewed_at"]),
        float(row["expires_at"]),
        now,
    )
