"""Which pages, notices and warnings are due for an incident at `now`. Pure: no I/O, no clock.

Everything the timers do is decided here from the incident's state and the set of keys that
have already fired (kept in the store). A key names what was done, not when, so a restart,
a re-plan or a severity change can never make the same thing happen twice:

- `page:<ref>`     a person or role on the escalation path was paged (ref = role name or user)
- `notify:<ref>`   a `notify` role got its FYI
- `sla:ack`        the acknowledgement SLA passed without an ack
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.config import SeverityPolicy
from bot.incidents import Incident


@dataclass(frozen=True)
class Delivery:
    """One message the bot owes someone: sent until Slack accepts it, never dropped."""

    kind: str  # page | fyi | paged_note | sla_breach
    target: str  # a role name, user ID or email for DMs; "incident" for posts about the incident
    detail: str = ""


@dataclass(frozen=True)
class Firing:
    """A decision that something is due now, and what must be sent because of it."""

    key: str
    deliveries: tuple[Delivery, ...]


def due_actions(incident: Incident, policy: SeverityPolicy, fired: frozenset[str], now: datetime) -> list[Firing]:
    """Everything due at `now` that has not fired yet, in the order it should go out."""
    if not incident.is_open:
        return []
    firings: list[Firing] = []
    for ref in policy.notify:
        key = f"notify:{ref}"
        if key not in fired:
            firings.append(Firing(key, (Delivery("fyi", ref),)))
    if incident.acknowledged_at is None:
        for index, step in enumerate(policy.escalation):
            if incident.declared_at + step.after > now:
                break
            for ref in step.page:
                key = f"page:{ref}"
                if key not in fired and f"page:{ref}" not in {f.key for f in firings}:
                    detail = f"step {index + 1} of the {policy.name} escalation path"
                    firings.append(
                        Firing(
                            key,
                            (Delivery("page", ref, detail), Delivery("paged_note", ref, detail)),
                        )
                    )
        breach_at = _ack_deadline(incident, policy)
        if breach_at is not None and breach_at <= now and "sla:ack" not in fired:
            firings.append(Firing("sla:ack", (Delivery("sla_breach", "incident", _fmt(policy.ack_within)),)))
    return firings


def next_due(incident: Incident, policy: SeverityPolicy, fired: frozenset[str], now: datetime) -> datetime | None:
    """When `due_actions` will next have something to say; `now` if it already has."""
    if not incident.is_open:
        return None
    if due_actions(incident, policy, fired, now):
        return now
    if incident.acknowledged_at is not None:
        return None
    candidates = [
        incident.declared_at + step.after
        for step in policy.escalation
        if incident.declared_at + step.after > now and any(f"page:{ref}" not in fired for ref in step.page)
    ]
    breach_at = _ack_deadline(incident, policy)
    if breach_at is not None and breach_at > now and "sla:ack" not in fired:
        candidates.append(breach_at)
    return min(candidates) if candidates else None


def _ack_deadline(incident: Incident, policy: SeverityPolicy) -> datetime | None:
    return incident.declared_at + policy.ack_within if policy.ack_within else None


def _fmt(delta: timedelta | None) -> str:
    from bot.durations import humanize

    return humanize(delta) if delta else ""
