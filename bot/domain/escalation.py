"""Which pages, notices and warnings are due for an incident at `now`. Pure: no I/O, no clock.

Everything the timers do is decided here from the incident's state and the set of keys that
have already fired (kept in the store). A key names what was done, not when, so a restart,
a re-plan or a severity change can never make the same thing happen twice:

- `page:<ref>`     a person or role on the escalation path was paged (ref = role name or user)
- `notify:<ref>`   a `notify` role got its FYI
- `sla:ack`        the acknowledgement SLA passed without an ack
- `sla:fix`        `fix_within` passed with no diagnose, rollback or identified/monitoring update
- `reminder:<start>:<k>`  the k-th update reminder counted from <start> (the last update, the
                   declare, or the end of a snooze); a new update or snooze starts a new series
- `reminder_notify:<ref>` a reminder ignored twice in a row was escalated to <ref>
- `postmortem:remind:<resolved_at>` the commander was reminded that the post-mortem is due; a
                   reopen and a new resolution start a new key, a reopen leaves nothing due
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.core.durations import humanize
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.incidents import Incident
from bot.domain.policy import SeverityPolicy


def due_actions(
    incident: Incident,
    policy: SeverityPolicy,
    fired: frozenset[str],
    now: datetime,
    postmortem_after: timedelta | None = None,
) -> list[Firing]:
    """Everything due at `now` that has not fired yet, in the order it should go out.

    `postmortem_after` is how long after resolution the post-mortem reminder is due (None: no
    reminder for this incident's severity).
    """
    if not incident.is_open:
        return _postmortem_reminder(incident, postmortem_after, fired, now)
    firings: list[Firing] = []
    for ref in policy.notify:
        key = f"notify:{ref}"
        if key not in fired:
            firings.append(Firing(key, (Delivery(DeliveryKind.FYI, ref),)))
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
                            (Delivery(DeliveryKind.PAGE, ref, detail), Delivery(DeliveryKind.PAGED_NOTE, ref, detail)),
                        )
                    )
        breach_at = _ack_deadline(incident, policy)
        if breach_at is not None and breach_at <= now and "sla:ack" not in fired:
            firings.append(Firing("sla:ack", (Delivery(DeliveryKind.SLA_BREACH, "incident", _fmt(policy.ack_within)),)))
    fix_at = _fix_deadline(incident, policy)
    if fix_at is not None and fix_at <= now and "sla:fix" not in fired:
        firings.append(Firing("sla:fix", (Delivery(DeliveryKind.FIX_NUDGE, "incident", _fmt(policy.fix_within)),)))
    firings += _reminders(incident, policy, fired, now)
    return firings


# A reminder ignored this many times in a row is also sent to the next person on the path.
IGNORED_BEFORE_ESCALATING = 2


def reminder_series(incident: Incident, policy: SeverityPolicy) -> tuple[datetime, datetime] | None:
    """(start, first due time) of the current series of update reminders; None without a cadence.

    Reminders come every `update_every` after the last update (or the declare). A snooze that
    ends later than the next reminder starts a new series at its end.
    """
    every = policy.update_every
    if not every or not incident.is_open:
        return None
    start = incident.last_update_at or incident.declared_at
    first = start + every
    if incident.snoozed_until is not None and incident.snoozed_until > first:
        return incident.snoozed_until, incident.snoozed_until
    return start, first


def _reminders(incident: Incident, policy: SeverityPolicy, fired: frozenset[str], now: datetime) -> list[Firing]:
    series = reminder_series(incident, policy)
    if series is None or policy.update_every is None or now < series[1]:
        return []
    start, first = series
    # Only the latest reminder due matters: after downtime, one reminder, not a burst.
    k = 1 + int((now - first) / policy.update_every)
    key = f"reminder:{start.isoformat()}:{k}"
    if key in fired:
        return []
    firings = [Firing(key, (Delivery(DeliveryKind.REMINDER, "incident", str(k)),))]
    if k > IGNORED_BEFORE_ESCALATING:
        ref = _next_on_path(policy, fired)
        if ref is not None:
            firings.append(Firing(f"reminder_notify:{ref}", (Delivery(DeliveryKind.REMINDER_ESCALATION, ref, str(k)),)))
    return firings


def _next_on_path(policy: SeverityPolicy, fired: frozenset[str]) -> str | None:
    """The next person on the escalation path not yet told about ignored reminders: after the
    people already paged (they are the ones not answering), wrapping round to the start."""
    refs = list(dict.fromkeys(ref for step in policy.escalation for ref in step.page))
    paged = [i for i, ref in enumerate(refs) if f"page:{ref}" in fired]
    after = (max(paged) + 1) if paged else 0
    for ref in refs[after:] + refs[:after]:
        if f"reminder_notify:{ref}" not in fired:
            return ref
    return None


def next_due(
    incident: Incident,
    policy: SeverityPolicy,
    fired: frozenset[str],
    now: datetime,
    postmortem_after: timedelta | None = None,
) -> datetime | None:
    """When `due_actions` will next have something to say; `now` if it already has."""
    if not incident.is_open:
        at = _postmortem_at(incident, postmortem_after, fired)
        return None if at is None or now - at > POSTMORTEM_STALE_AFTER else max(at, now)
    if due_actions(incident, policy, fired, now):
        return now
    candidates: list[datetime] = []
    if incident.acknowledged_at is None:
        candidates += [
            incident.declared_at + step.after
            for step in policy.escalation
            if incident.declared_at + step.after > now and any(f"page:{ref}" not in fired for ref in step.page)
        ]
        breach_at = _ack_deadline(incident, policy)
        if breach_at is not None and breach_at > now and "sla:ack" not in fired:
            candidates.append(breach_at)
    fix_at = _fix_deadline(incident, policy)
    if fix_at is not None and fix_at > now and "sla:fix" not in fired:
        candidates.append(fix_at)
    series = reminder_series(incident, policy)
    if series is not None and policy.update_every is not None:
        _, first = series
        passed = 0 if now < first else 1 + int((now - first) / policy.update_every)
        candidates.append(first + policy.update_every * passed)
    return min(candidates) if candidates else None


# A reminder more than this late (a bot down for a week, a database restored from long ago)
# reminds nobody of anything useful; it is dropped rather than sent.
POSTMORTEM_STALE_AFTER = timedelta(days=7)


def postmortem_reminder_key(incident: Incident) -> str:
    assert incident.resolved_at is not None
    return f"postmortem:remind:{incident.resolved_at.isoformat()}"


def postmortem_draft_key(incident: Incident) -> str:
    """The draft's upload on resolution: once per resolution, whatever retries the resolve."""
    assert incident.resolved_at is not None
    return f"postmortem:draft:{incident.resolved_at.isoformat()}"


def _postmortem_at(incident: Incident, after: timedelta | None, fired: frozenset[str]) -> datetime | None:
    if after is None or incident.is_open or incident.resolved_at is None:
        return None
    if postmortem_reminder_key(incident) in fired:
        return None
    return incident.resolved_at + after


def _postmortem_reminder(
    incident: Incident, after: timedelta | None, fired: frozenset[str], now: datetime
) -> list[Firing]:
    at = _postmortem_at(incident, after, fired)
    if at is None or at > now or now - at > POSTMORTEM_STALE_AFTER:
        return []
    return [Firing(postmortem_reminder_key(incident), (Delivery(DeliveryKind.POSTMORTEM_REMINDER, "commander"),))]


def missed_at_declare(incident: Incident, policy: SeverityPolicy) -> timedelta | None:
    """How long after detection the incident was declared, when that was already past its ack
    target (an alert that fired 20 min before anyone declared, with a 15 min target): the
    announcement says so once, and no warning follows, since it would contradict the first page
    sent at the same moment. None when the target could still be met at the declare."""
    if not policy.ack_within:
        return None
    late = incident.declared_at - incident.detected
    return late if late >= policy.ack_within else None


def _ack_deadline(incident: Incident, policy: SeverityPolicy) -> datetime | None:
    # From the alert's start: the runbook's clock starts when the problem is detected. Pages
    # still follow the declare, so a late declare does not page the whole path at once.
    if not policy.ack_within or missed_at_declare(incident, policy) is not None:
        return None
    return incident.detected + policy.ack_within


def _fix_deadline(incident: Incident, policy: SeverityPolicy) -> datetime | None:
    if policy.fix_within is None or incident.fix_started_at is not None:
        return None
    return incident.declared_at + policy.fix_within


def _fmt(delta: timedelta | None) -> str:
    return humanize(delta) if delta else ""
