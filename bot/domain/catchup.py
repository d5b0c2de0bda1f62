"""The catch-up: an incident's story so far in a few lines, for whoever joins late. Pure: no I/O.

Built from what the store holds (the incident, its timeline, follow-ups, proposals and the keys
already fired), so answering it needs no Slack read and is instant. `/incident catchup` shows
it to the asker alone, and a person joining the war room gets it once (`bot.incident.catchup`).
Timeline lines are already mrkdwn (user text escaped, people as `<@U…>`), so they are shown as
they are; the title is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bot.core.durations import humanize
from bot.core.mrkdwn import user_text
from bot.domain import pagerduty
from bot.domain.escalation import reminder_series
from bot.domain.incidents import Incident
from bot.domain.policy import Config, SeverityPolicy
from bot.domain.proposals import Proposal, ProposalStatus
from bot.domain.records import Event, EventKind, FollowUp

UPDATES_SHOWN = 2
FOLLOWUPS_SHOWN = 5
LINE_MAX = 600  # one timeline line quoted back: enough for an update, never the whole message
_BOT = "bot"


@dataclass(frozen=True)
class Facts:
    """What the catch-up is built from: all of it read from the store in one go."""

    incident: Incident
    events: Sequence[Event]
    followups: Sequence[FollowUp]
    proposals: Sequence[Proposal]
    fired: frozenset[str]


@dataclass(frozen=True)
class NextTimer:
    at: datetime
    what: str


def next_timer(incident: Incident, policy: SeverityPolicy, fired: frozenset[str], now: datetime) -> NextTimer | None:
    """What the timers will do next for an open incident, and when (the same rules as
    `escalation.due_actions`: escalation steps until an ack, the SLA alarms, update reminders)."""
    if not incident.is_open:
        return None
    candidates: list[NextTimer] = []
    if incident.acknowledged_at is None:
        for step in policy.escalation:
            waiting = [ref for ref in step.page if f"page:{ref}" not in fired]
            if waiting:
                at = incident.declared_at + step.after
                candidates.append(NextTimer(at, f"escalation pages {', '.join(waiting)}"))
        if policy.ack_within and "sla:ack" not in fired:
            candidates.append(NextTimer(incident.detected + policy.ack_within, "the acknowledgement SLA passes"))
    if policy.fix_within and incident.fix_started_at is None and "sla:fix" not in fired:
        candidates.append(NextTimer(incident.declared_at + policy.fix_within, "the fix SLA passes"))
    series = reminder_series(incident, policy)
    if series is not None and policy.update_every is not None:
        _, first = series
        passed = 0 if now < first else 1 + int((now - first) / policy.update_every)
        candidates.append(
            NextTimer(first + policy.update_every * passed, "the commander is reminded to post an update")
        )
    return min(candidates, key=lambda t: t.at) if candidates else None


def lines(config: Config, facts: Facts, now: datetime) -> list[str]:
    """The catch-up as mrkdwn lines, most important first."""
    incident = facts.incident
    policy = config.policy(incident.severity)
    state = "resolved" if not incident.is_open else incident.status
    out = [f"*{incident.ref} · {incident.severity} {policy.label} · {state}*: {user_text(incident.title, 300)}"]

    age = (incident.resolved_at or now) - incident.detected
    opened = f"Open for {humanize(age)}" if incident.is_open else f"Was open for {humanize(age)}"
    out.append(f"{opened}. Commander <@{incident.commander}>{_on_it(facts)}.")

    if incident.acknowledged_at is not None:
        who = pagerduty.person(incident.acknowledged_by) if incident.acknowledged_by else "someone"
        took = humanize(incident.acknowledged_at - incident.detected)
        out.append(f"Acknowledged by {who} after {took}.")
    elif incident.is_open:
        out.append("⚠️ *Not acknowledged yet*: escalation is still paging.")

    updates = [e for e in facts.events if e.kind == EventKind.UPDATE][-UPDATES_SHOWN:]
    if updates:
        out.append("*Last updates*")
        out += [f"• {_ago(e.at, now)}: {_clip(e.text)}" for e in reversed(updates)]
    else:
        out.append("No update has been posted yet.")

    diagnoses = [e for e in facts.events if e.kind == EventKind.DIAGNOSE]
    out.append(
        f"*Diagnosis*: {_clip(diagnoses[-1].text)} ({_ago(diagnoses[-1].at, now)})"
        if diagnoses
        else "*Diagnosis*: not run yet."
    )

    fix = _fix(facts, now)
    if fix:
        out.append(f"*Fix*: {fix}")

    if facts.followups:
        shown = facts.followups[-FOLLOWUPS_SHOWN:]
        more = len(facts.followups) - len(shown)
        out.append(f"*Follow-ups* ({len(facts.followups)}): " + "; ".join(_clip(f.text, 200) for f in shown))
        if more:
            out[-1] += f" and {more} more"

    timer = next_timer(incident, policy, facts.fired, now)
    if timer is not None:
        when = "now" if timer.at <= now else f"in {humanize(timer.at - now)}"
        out.append(f"*Next*: {timer.what} {when}.")
    elif not incident.is_open:
        out.append(
            f"Resolved {_ago(incident.resolved_at, now)}"
            + (f" by <@{incident.resolved_by}>." if incident.resolved_by else ".")
        )
    return out


def text(config: Config, facts: Facts, now: datetime) -> str:
    return "\n".join(lines(config, facts, now))


def _on_it(facts: Facts) -> str:
    """The other people working on it: role holders, then whoever acted in the timeline."""
    incident = facts.incident
    people: list[str] = []
    for role, holder in (("scribe", incident.scribe), ("comms", incident.comms)):
        if holder:
            people.append(f"<@{holder}> ({role})")
    named = {incident.commander, incident.scribe, incident.comms}
    actors = [e.actor for e in facts.events if e.actor and e.actor != _BOT and e.actor[:1] in {"U", "W"}]
    people += [f"<@{a}>" for a in dict.fromkeys(actors) if a not in named]
    return f"; on it: {', '.join(people[:8])}" if people else ""


def _fix(facts: Facts, now: datetime) -> str:
    """The latest production change proposed (rollback or scale) and how far it got, and the
    latest verification of a fix when there is one."""
    parts = []
    if facts.proposals:
        p = facts.proposals[-1]
        states: dict[str, str] = {
            ProposalStatus.PENDING: "proposed, waiting for a confirm",
            ProposalStatus.EXECUTING: f"confirmed by <@{p.confirmed_by}>, under way" if p.confirmed_by else "under way",
            ProposalStatus.SUCCEEDED: "done",
            ProposalStatus.FAILED: "failed",
            ProposalStatus.CANCELLED: "cancelled",
            ProposalStatus.EXPIRED: "expired unconfirmed",
            ProposalStatus.UNKNOWN: "outcome unknown (the bot stopped while carrying it out)",
        }
        state = states.get(str(p.status), str(p.status))
        since = p.finished_at or p.confirmed_at or p.created_at
        parts.append(f"{p.what} ({p.action} proposed by <@{p.proposer}>): {state}, {_ago(since, now)}")
    checks = [e for e in facts.events if str(e.kind).startswith("verify")]
    if checks:
        parts.append(f"{_clip(checks[-1].text)} ({_ago(checks[-1].at, now)})")
    fixes = [e for e in facts.events if e.kind == EventKind.FIX]
    if not parts and fixes:
        parts.append(f"{_clip(fixes[-1].text)} ({_ago(fixes[-1].at, now)})")
    return "; ".join(parts)


def _ago(at: datetime | None, now: datetime) -> str:
    return f"{humanize(now - at)} ago" if at is not None else "at an unknown time"


def _clip(line: str, limit: int = LINE_MAX) -> str:
    """A stored mrkdwn line cut short without breaking a `<…>` entity in half."""
    if len(line) <= limit:
        return line
    cut = line[:limit]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut.rstrip() + "…"
