"""Proposed production changes (rollbacks and the like): their row is what makes "sent at most once" true.

Creating one with its timeline line and audit record, the confirm click decided and applied in one
transaction (`start_proposal`: of two clicks at once exactly one starts it), cancelling, and the
outcome of running it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from bot.domain.proposals import Proposal, Verdict, cancelled_outcome
from bot.domain.records import proposal_event
from bot.store.base import StoreBase, _from_db_datetime, _to_db


class ProposalsPart(StoreBase):
    """Proposed production changes."""

    def create_proposal(self, draft: Proposal, now: datetime, text: str) -> Proposal:
        """Store a new pending proposal with its timeline line and audit record."""
        row = {k: _to_db(v) for k, v in vars(draft).items() if k != "id"}
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO proposals ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) RETURNING id",
                list(row.values()),
            )
            proposal = replace(draft, id=int(cursor.fetchone()[0]))
            self._event(db, draft.incident, now, proposal_event(draft.action, "proposed"), draft.proposer, text)
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
        executor: str = "",
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
                    "UPDATE proposals SET status = 'executing', confirmed_by = ?, confirmed_at = ?, move_traffic = ?,"
                    " executor = ?, heartbeat_at = ? WHERE id = ? AND status = 'pending'",
                    [user, _to_db(now), int(move_traffic), executor or None, _to_db(now), proposal_id],
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
                self._event(db, proposal.incident, now, proposal_event(proposal.action, "cancelled"), user, text)
                self._audit(db, proposal.incident, now, user, f"{proposal.action}-cancelled", {"proposal": proposal_id})
        return cursor.rowcount == 1, proposal

    def finish_proposal(
        self, proposal_id: int, status: str, outcome: str, now: datetime, *, actor: str, text: str
    ) -> Proposal | None:
        """executing -> succeeded | failed | unknown, with the outcome on the timeline and in the
        audit; None, recording nothing, when it was no longer executing (another instance said
        its outcome is unknown, or finished it, first)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE proposals SET status = ?, outcome = ?, finished_at = ? WHERE id = ? AND status = 'executing'",
                [status, outcome, _to_db(now), proposal_id],
            )
            if cursor.rowcount != 1:
                return None
            proposal = _proposal(next(db.query("SELECT * FROM proposals WHERE id = ?", [proposal_id])))
            self._event(db, proposal.incident, now, proposal_event(proposal.action, status), actor, text)
            self._audit(
                db,
                proposal.incident,
                now,
                actor,
                f"{proposal.action}-{status}",
                {"proposal": proposal_id, "kind": proposal.kind, "target": proposal.target, "outcome": outcome},
            )
        return proposal

    def beat_execution(self, proposal_id: int, executor: str, now: datetime) -> bool:
        """The executing instance is alive: its heartbeat is renewed; False once it no longer executes."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE proposals SET heartbeat_at = ? WHERE id = ? AND status = 'executing' AND executor = ?",
                [_to_db(now), proposal_id, executor],
            )
            return cursor.rowcount == 1

    def lapsed_executions(self, before: datetime, *, dead_except: str | None = None) -> list[Proposal]:
        """Proposals executing whose executor's last heartbeat is older than `before` (it died);
        with `dead_except`, also every one of another executor (SQLite: a dead predecessor's)."""
        sql = "SELECT * FROM proposals WHERE status = 'executing' AND (heartbeat_at IS NULL OR heartbeat_at < ?"
        params: list[Any] = [_to_db(before)]
        if dead_except is not None:
            sql += " OR coalesce(executor, '') != ?"
            params.append(dead_except)
        return [_proposal(r) for r in self._rows(sql + ") ORDER BY id", params)]


def _proposal(row: dict[str, Any]) -> Proposal:
    values = {k: row[k] for k in (f.name for f in fields(Proposal))}
    for key in ("created_at", "confirmed_at", "finished_at"):
        values[key] = _from_db_datetime(values[key])
    values["pinned"] = bool(values["pinned"])
    values["move_traffic"] = bool(values["move_traffic"])
    values["outcome"] = values["outcome"] or ""
    values["current"] = values["current"] or ""
    values["serving_revision"] = values["serving_revision"] or ""
    values["etag"] = values["etag"] or ""
    values["latest_revision"] = values["latest_revision"] or ""
    return Proposal(**values)
