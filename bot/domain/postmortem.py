"""The post-mortem draft: markdown in the runbook's Post-Incident Review shape. Pure: no I/O.

Everything the bot recorded goes in: the timeline (each event once, in order, with the time
since the incident started), the impact (duration, severity, who was paged and when, time to
acknowledge and to mitigate), the root cause and detection as far as the resolve form, the
diagnosis and the notes say, and the follow-up actions. What only people can judge ("what we
did well", "what we will improve") is left as the template's empty sections.

The file is plain markdown, read outside Slack (a doc, a wiki) where user IDs mean nothing:
people are named `@Display Name` from `Facts.names` (looked up in Slack at draft time), `@U…`
only where no name was found; Slack's escapes are decoded, and table cells cannot be broken by
a `|` or a newline in someone's note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.core import text as typed
from bot.core.durations import humanize
from bot.domain import pagerduty
from bot.domain.incidents import Incident
from bot.domain.records import Event, EventKind, FollowUp, Resolution
from bot.domain.timeline import phase_started, plain, utc, with_phases


@dataclass(frozen=True)
class Page:
    """Someone paged, and when the page reached them."""

    who: str
    at: datetime


@dataclass(frozen=True)
class Facts:
    """What the draft is written from, gathered from the store."""

    incident: Incident
    events: list[Event]
    resolution: Resolution | None
    followups: list[FollowUp]
    pages: list[Page]
    service: str
    severity_label: str
    ack_within: timedelta | None
    generated_at: datetime
    names: Mapping[str, str] = field(default_factory=dict)  # user ID -> display name


def started_at(incident: Incident, events: list[Event]) -> datetime:
    """When the incident started: its first alert if one was recorded before the declare, else the declare."""
    alerts = [e.at for e in events if e.kind == EventKind.ALERT and e.at <= incident.declared_at]
    return min(alerts) if alerts else incident.declared_at


# A user ID as the draft writes it: `@U0ALICE`, `@W123` (Enterprise Grid), and not the middle of a word.
_MENTIONED = re.compile(r"(?<![\w@])@([UW][A-Z0-9]{2,})\b")


def people_in(markdown: str) -> list[str]:
    """The user IDs a draft mentions, in order of first mention: the ones to look up by name."""
    return list(dict.fromkeys(_MENTIONED.findall(markdown)))


def render(facts: Facts) -> str:
    markdown = _render(facts)
    if not facts.names:
        return markdown
    return _MENTIONED.sub(lambda m: f"@{_name(facts.names.get(m.group(1))) or m.group(1)}", markdown)


def _name(name: str | None) -> str:
    # A name is written into markdown tables and lines: one line, no cell breaks.
    return _cell(name) if name else ""


def _render(facts: Facts) -> str:
    inc = facts.incident
    start = started_at(inc, facts.events)
    summary = facts.resolution.summary if facts.resolution and facts.resolution.summary else inc.summary
    lines = [
        f"# Incident Post-Mortem: {facts.service} {start:%Y-%m-%d}",
        "",
        f"**{inc.ref}** · {inc.severity} ({facts.severity_label}) · {_one_line(inc.title)}",
        "",
        f"_Draft written by incident-bot at {utc(facts.generated_at)} UTC from the incident's record; edit freely._",
        "",
        "## Executive Summary",
        _one_line(summary) if summary else "[1-2 sentences about what happened and impact]",
        "",
        "## Timeline",
        "All times UTC; `since start` counts from "
        + ("the first alert." if start != inc.declared_at else "the declaration."),
        "",
        "| Time (UTC) | Since start | Phase | Event |",
        "|------|------|------|------|",
    ]
    for phase, event in with_phases(facts.events):
        lines.append(f"| {utc(event.at)} | {_since(event.at, start)} | {phase} | {_cell(plain(event.text))} |")
    lines += ["", "## Impact", *_impact(facts, start), "", "## Root Cause", *_root_cause(facts), ""]
    lines += ["## Detection & Response", *_detection(facts, start), ""]
    lines += [
        "## What We Did Well",
        "1. ",
        "",
        "## What We'll Improve",
        "1. [Action item] - Owner: [Name], Due: [Date]",
        "",
        "## Followup Actions",
    ]
    if facts.followups:
        lines += [f"- [ ] {_one_line(f.text)} - added by @{f.actor} on {f.at:%Y-%m-%d}" for f in facts.followups]
    else:
        lines.append("- [ ] [Action] - [Owner] by [Date]")
    lines += ["", "## Attendees", *_attendees(facts), ""]
    return "\n".join(lines)


def _impact(facts: Facts, start: datetime) -> list[str]:
    inc = facts.incident
    if inc.resolved_at is not None:
        duration = f"{humanize(inc.resolved_at - start)} ({utc(start)} to {utc(inc.resolved_at)} UTC)"
    else:
        duration = f"ongoing (since {utc(start)} UTC)"
    impact = facts.resolution.customer_impact if facts.resolution else None
    lines = [
        f"- **Duration**: {duration}",
        f"- **Severity**: {inc.severity} ({facts.severity_label})",
        f"- **Customers Affected**: {_one_line(impact) if impact else 'All / [N customers]'}",
        "- **Revenue Impact**: $[X] (estimated)",
        "- **Data Loss**: None / [Details if any]",
    ]
    if facts.pages:
        paged = ", ".join(f"@{p.who} at {p.at:%H:%M:%S} ({_since(p.at, start)})" for p in facts.pages)
        lines.append(f"- **Paged**: {paged}")
    else:
        lines.append("- **Paged**: nobody (the incident was handled by those who declared it)")
    lines.append(f"- **Time to acknowledge**: {_ack(facts, start)}")
    mitigated = phase_started(facts.events, "mitigated")
    verified = next((e.at for e in reversed(facts.events) if e.kind == EventKind.VERIFY_HELD), None)
    if mitigated is not None:
        line = f"- **Time to mitigate**: {humanize(mitigated - start)} (mitigated at {mitigated:%H:%M:%S}"
        line += f", verified at {verified:%H:%M:%S})" if verified is not None else ", not verified)"
        lines.append(line)
    elif inc.resolved_at is not None:
        lines.append(
            f"- **Time to mitigate**: {humanize(inc.resolved_at - start)} (no mitigation recorded before the resolution)"
        )
    else:
        lines.append("- **Time to mitigate**: not mitigated yet")
    return lines


def _ack(facts: Facts, start: datetime) -> str:
    inc = facts.incident
    ack = next((e for e in facts.events if e.kind == EventKind.ACK), None)
    if ack is None:
        return "never acknowledged before the resolution"
    taken = ack.at - start
    text = f"{humanize(taken)} (by @{ack.actor})"
    if facts.ack_within is not None:
        verdict = "met" if taken <= facts.ack_within else "missed"
        text += f"; the {inc.severity} target of {humanize(facts.ack_within)} was {verdict}"
    return text


def _root_cause(facts: Facts) -> list[str]:
    lines = []
    if facts.resolution and facts.resolution.root_cause:
        lines.append(_one_line(facts.resolution.root_cause))
    else:
        lines.append("[Detailed explanation of what caused the incident]")
    diagnoses = [e for e in facts.events if e.kind == EventKind.DIAGNOSE]
    notes = [e for e in facts.events if e.kind in {EventKind.NOTE, EventKind.PIN}]
    if diagnoses:
        lines += ["", "What the diagnosis found:"] + [f"- {utc(e.at)}: {_one_line(plain(e.text))}" for e in diagnoses]
    if notes:
        lines += ["", "Notes taken during the incident:"] + [
            f"- {utc(e.at)}: {_one_line(plain(e.text))}" for e in notes
        ]
    return lines


def _detection(facts: Facts, start: datetime) -> list[str]:
    inc = facts.incident
    alert = next((e for e in facts.events if e.kind == EventKind.ALERT), None)
    detected_by = _one_line(plain(alert.text)) if alert else f"declared by hand by @{inc.declared_by}"
    lag = (
        f"{humanize(inc.declared_at - start)} (from the first alert to the declaration)"
        if alert
        else "[X minutes] (from incident start to alert)"
    )
    lines = [f"- **Detected by**: {detected_by}", f"- **Detection lag**: {lag}"]
    if inc.fix_started_at is not None:
        lines.append(
            f"- **Response time**: {humanize(inc.fix_started_at - start)} (from the start to the fix under way)"
        )
    else:
        lines.append("- **Response time**: no fix recorded as under way")
    return lines


def _attendees(facts: Facts) -> list[str]:
    inc = facts.incident
    roles: dict[str, list[str]] = {}

    def add(user: str | None, role: str) -> None:
        if user:
            roles.setdefault(user, [])
            if role not in roles[user]:
                roles[user].append(role)

    add(inc.commander, "commander")
    add(inc.declared_by, "declared")
    add(inc.scribe, "scribe")
    add(inc.comms, "comms")
    add(inc.acknowledged_by, "acknowledged")
    for page in facts.pages:
        add(page.who, "paged")
    for _, event in with_phases(facts.events):
        if event.actor and event.actor != "bot":
            add(event.actor, "in the timeline")
    return [f"- {_attendee(user)} - {', '.join(r)}" for user, r in roles.items()]


def _attendee(ref: str) -> str:
    name = pagerduty.outside_name(ref)
    return f"{name} (in PagerDuty)" if name is not None else f"@{ref}"


def _since(moment: datetime, start: datetime) -> str:
    delta = moment - start
    return f"-{humanize(-delta)}" if delta < timedelta(0) else f"+{humanize(delta)}"


def _one_line(text: str) -> str:
    """One line of plain text: what people typed (titles, summaries, follow-ups) keeps the
    mentions and links Slack recognised as `@name`, `#channel` or the link itself."""
    return " ".join(typed.plain(text).split())


def _cell(text: str) -> str:
    """Text that stays inside its markdown table cell."""
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|")
