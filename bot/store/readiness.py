"""The daily on-call readiness check: each day's run claimed once, and the problems reported.

A day's row is what makes "fires once across restarts" true; the problems table is what makes
"each problem reported once until it changes" true. Both are written in the claim's one
transaction, with the post the run owes (kept until Slack accepts it, like handoff notices).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from bot.domain.readiness import Problem
from bot.store.base import StoreBase, _to_db


class ReadinessPart(StoreBase):
    """Readiness check runs and the problems they reported."""

    def claim_oncall_check(
        self,
        day: str,
        problems: Sequence[Problem],
        compose: Callable[[list[Problem], int], str],
        channel: str,
        now: datetime,
    ) -> bool:
        """Record the run of `day` with what it found; False if that day's run was claimed before.

        Problems not reported before get a post (`compose(new, still standing)`); problems that
        went away are forgotten, so they are reported again if they come back."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO oncall_checks (day, claimed_at, problems) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [day, _to_db(now), len(problems)],
            )
            if cursor.rowcount != 1:
                return False
            known = {str(r["key"]) for r in db.query("SELECT key FROM oncall_problems")}
            current = {p.key for p in problems}
            new = [p for p in problems if p.key not in known]
            for key in known - current:
                db.execute("DELETE FROM oncall_problems WHERE key = ?", [key])
            for p in new:
                db.execute(
                    "INSERT INTO oncall_problems (key, text, reported_at) VALUES (?, ?, ?)",
                    [p.key, p.text, _to_db(now)],
                )
            if new:
                db.execute(
                    "UPDATE oncall_checks SET channel = ?, text = ? WHERE day = ?",
                    [channel, compose(new, len(problems) - len(new)), day],
                )
            self._audit(db, None, now, "bot", "oncall_check", {"day": day, "problems": len(problems), "new": len(new)})
        return True

    def oncall_check_claimed(self, day: str) -> bool:
        return bool(self._rows("SELECT 1 AS x FROM oncall_checks WHERE day = ?", [day]))

    def pending_oncall_posts(self) -> list[tuple[str, str, str]]:
        """(day, channel, text) of the readiness posts Slack has not accepted yet."""
        rows = self._rows(
            "SELECT day, channel, text FROM oncall_checks WHERE text IS NOT NULL AND sent_at IS NULL ORDER BY day"
        )
        return [(str(r["day"]), str(r["channel"]), str(r["text"])) for r in rows]

    def finish_oncall_post(self, day: str, now: datetime) -> None:
        with self.transaction() as db:
            db.execute("UPDATE oncall_checks SET sent_at = ? WHERE day = ?", [_to_db(now), day])

    def reported_problems(self) -> list[str]:
        return [str(r["key"]) for r in self._rows("SELECT key FROM oncall_problems ORDER BY key")]
