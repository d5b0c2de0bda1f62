"""What the person woken second is told: war-room greetings claimed once, and the reads the
catch-up and the App Home are built from.

A greeting's row is what makes "once per person per incident" true: it is claimed before the
catch-up is sent (an instance that loses the claim sends nothing), and released if Slack refused
the message, so a later join may try again. The set-up claims the people it briefed itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from bot.domain.proposals import Proposal
from bot.store.base import StoreBase, _to_db
from bot.store.proposals import _proposal


class BriefingsPart(StoreBase):
    """War-room greetings, and the reads of the catch-up and the App Home."""

    def claim_greeting(self, number: int, user: str, now: datetime) -> bool:
        """Record that `user` is being greeted in INC-`number`'s war room; False if they were before."""
        with self.transaction() as db:
            cursor = db.execute(
                'INSERT INTO greetings (incident, "user", at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
                [number, user, _to_db(now)],
            )
            return cursor.rowcount == 1

    def claim_greetings(self, number: int, users: Iterable[str], now: datetime) -> None:
        """The set-up briefed these people itself: their joins are not greeted again."""
        with self.transaction() as db:
            for user in dict.fromkeys(users):
                db.execute(
                    'INSERT INTO greetings (incident, "user", at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
                    [number, user, _to_db(now)],
                )

    def release_greeting(self, number: int, user: str) -> None:
        """The greeting could not be sent: a later join may try again."""
        with self.transaction() as db:
            db.execute('DELETE FROM greetings WHERE incident = ? AND "user" = ?', [number, user])

    def greeted(self, number: int) -> list[str]:
        rows = self._rows('SELECT "user" FROM greetings WHERE incident = ? ORDER BY at', [number])
        return [str(r["user"]) for r in rows]

    def incident_proposals(self, number: int) -> list[Proposal]:
        rows = self._rows("SELECT * FROM proposals WHERE incident = ? ORDER BY id", [number])
        return [_proposal(r) for r in rows]

    def pages_waiting(self, user: str) -> list[tuple[int, datetime]]:
        """(incident, when Slack took it) of the pages to `user` in incidents still open and
        unacknowledged: the App Home's Acknowledge buttons."""
        rows = self._rows(
            "SELECT d.incident, COALESCE(d.sent_at, d.next_attempt_at) AS at FROM deliveries d"
            " JOIN incidents i ON i.number = d.incident"
            " WHERE d.kind = 'page' AND d.status = 'sent' AND d.\"user\" = ?"
            " AND i.status != 'resolved' AND i.acknowledged_at IS NULL ORDER BY d.id",
            [user],
        )
        return [(int(r["incident"]), datetime.fromisoformat(str(r["at"]))) for r in rows]
