"""What the review of an incident reads and keeps: pins, follow-ups, resolution details, drafts, stats.

War-room messages pinned into the timeline (once each), follow-up actions, the resolver's
summary, root cause and impact (written in the resolving change's own transaction, so this part
builds on the incidents part), post-mortem drafts and their uploads, the pages that were sent,
the incidents a post-mortem reminder may await, and the timings the stats are computed from.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.domain.deliveries import Firing
from bot.domain.incidents import Change, Incident
from bot.domain.records import Draft, EventKind, FollowUp, Resolution, StatRow
from bot.store.base import _from_db_datetime, _to_db
from bot.store.incidents import IncidentsPart
from bot.store.sqlite import Tx


class ReviewsPart(IncidentsPart):
    """Pins, follow-ups, resolution details, post-mortem drafts and stats. A resolution's details are
    written in the resolving change's transaction, so this part builds on the incidents part."""

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
            self._event(db, number, at, EventKind.PIN, actor, text)
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
            self._event(db, number, now, EventKind.FOLLOWUP, actor, line)
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

    def note_draft_file(self, number: int, file_id: str) -> None:
        """The file the draft is being uploaded as, before Slack is asked to share it: with no
        channel recorded, an upload in doubt (`record_draft_upload` records it delivered)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE postmortems SET file_id = ?, permalink = NULL, channel = NULL WHERE incident = ?",
                [file_id, number],
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
