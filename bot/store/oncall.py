"""On-call schedules' writes: overrides and handoffs.

Overrides are never deleted (clearing one stamps it, so the table is its own history), and one is
in force per schedule at a time. A handoff's row is what makes "noticed once" true; the DMs it
owes are kept with it until Slack accepts them. Audit records about schedules are about no
incident: their incident is NULL, like refusals'.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain.records import HandoffNotice
from bot.domain.schedules import Override
from bot.store.base import StoreBase, _from_db_datetime, _to_db


class OnCallPart(StoreBase):
    """On-call overrides and handoffs.

    Audit records about schedules are about no incident: their incident is NULL, like refusals'.
    """

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
