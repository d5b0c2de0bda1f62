"""Incidents, their timeline and their audit: the store's verbs about the incident itself.

Declaring one (numbered, with its first timeline line, its audit record, the firings decided at
declare and the alerts it is declared for, in one transaction), reading them, applying a decided
change under the version check (`apply`, `change`), the facts set-up learns, timeline lines and
audit records (refusals among them), and `/incident list`'s overview (README: Performance; its
index is migration 3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.domain.deliveries import Firing
from bot.domain.incidents import Change, Incident, declared_line
from bot.domain.records import AuditRecord, Event, EventKind
from bot.store.alerts import AlertsPart
from bot.store.base import _INCIDENT_COLUMNS, _incident, _to_db
from bot.store.deliveries import DeliveriesPart
from bot.store.sqlite import Tx


class IncidentsPart(DeliveriesPart, AlertsPart):
    """Incidents, timeline and audit. A declare records its firings and links its alerts in its own
    transaction, so this part builds on those two."""

    def claim_setup(self, number: int, holder: str, now: datetime, until: datetime) -> bool:
        """Claim the incident's set-up (announcing it, making its war room) until `until`: False
        while another holder's claim runs, so two instances never both post or create. On SQLite
        (one process) another holder's claim is a dead predecessor's, taken over at once."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO setup_claims (incident, holder, until) VALUES (?, ?, ?) ON CONFLICT (incident) DO UPDATE"
                " SET holder = excluded.holder, until = excluded.until"
                " WHERE setup_claims.holder = excluded.holder OR setup_claims.until <= ? OR ?",
                [number, holder, _to_db(until), _to_db(now), self.dialect == "sqlite"],
            )
            return cursor.rowcount == 1

    def release_setup(self, number: int, holder: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM setup_claims WHERE incident = ? AND holder = ?", [number, holder])

    def lapsed_setups(self, now: datetime) -> list[int]:
        """Incidents whose set-up claim has passed its deadline unreleased: its holder died or
        froze mid-set-up, and whoever claims it next finishes the set-up."""
        rows = self._rows("SELECT incident FROM setup_claims WHERE until <= ? ORDER BY incident", [_to_db(now)])
        return [int(r["incident"]) for r in rows]

    def drop_lapsed_setup(self, number: int, now: datetime) -> None:
        """Forget a lapsed claim on a set-up that is complete (its holder died before releasing it)."""
        with self.transaction() as db:
            db.execute("DELETE FROM setup_claims WHERE incident = ? AND until <= ?", [number, _to_db(now)])

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
            self._event(db, incident.number, now, EventKind.DECLARE, draft.declared_by, declared_line(incident))
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

    def record_audit(self, number: int, now: datetime, actor: str, action: str, detail: dict[str, Any]) -> None:
        """An audit record with no timeline line (a refused click)."""
        with self.transaction() as db:
            self._audit(db, number, now, actor, action, detail)

    def count_incidents(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM incidents")[0]["n"])

    def known_announcement_channel(self) -> str | None:
        rows = self._rows(
            "SELECT announcement_channel FROM incidents WHERE announcement_ts IS NOT NULL ORDER BY number DESC LIMIT 1"
        )
        return rows[0]["announcement_channel"] if rows else None

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


def _audit_record(row: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        row["incident"], datetime.fromisoformat(row["at"]), row["actor"], row["action"], json.loads(row["detail"])
    )
