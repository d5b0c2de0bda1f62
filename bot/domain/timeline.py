"""The timeline read back: phases of the runbook, and its lines as plain text. Pure: no I/O.

Timeline lines are stored as mrkdwn (user text already escaped, people as `<@U…>`). Slack
shows them as they are; the post-mortem file and the terminal want plain text, which `plain`
gives. Messages captured with a :pushpin: come from Slack in its own markup and go through
`from_slack` first, so a pinned `<!channel>` can never ping anyone when the timeline is shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

from bot.domain.records import Event, EventKind

PHASES = ("detected", "acknowledged", "diagnosed", "mitigated", "resolved")
# A rollback that went through (or may have: its outcome is unknown) mitigates.
MITIGATING = frozenset({EventKind.ROLLBACK_SUCCEEDED, EventKind.ROLLBACK_UNKNOWN})

_UPDATE_STATUS = re.compile(r"posted an update \((\w+)\)")
_TOKEN = re.compile(r"<([^<>]*)>")
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def phase_of(event: Event, current: str) -> str:
    """The phase the incident is in once `event` happened, given the phase before it.

    Phases only move forward, except that a reopening starts over at detected.
    """
    if event.kind in {EventKind.DECLARE, EventKind.REOPEN}:
        return "detected"
    if event.kind == EventKind.RESOLVE:
        return "resolved"
    target = None
    if event.kind == EventKind.ACK:
        target = "acknowledged"
    elif event.kind in {EventKind.DIAGNOSE, EventKind.FIX}:
        target = "diagnosed"
    elif event.kind in MITIGATING:
        target = "mitigated"
    elif event.kind == EventKind.UPDATE:
        # The update's status is in its line (incidents.post_update writes it there).
        match = _UPDATE_STATUS.search(event.text)
        status = match.group(1) if match else ""
        target = {"identified": "diagnosed", "monitoring": "mitigated"}.get(status)
    if target is not None and PHASES.index(target) > PHASES.index(current):
        return target
    return current


def with_phases(events: Iterable[Event]) -> list[tuple[str, Event]]:
    """Each event with the phase it belongs to, in timeline order."""
    current = "detected"
    out = []
    for event in events:
        current = phase_of(event, current)
        out.append((current, event))
    return out


def by_phase(events: Iterable[Event]) -> list[tuple[str, list[Event]]]:
    """Consecutive runs of events in the same phase: a reopened incident shows its phases again."""
    groups: list[tuple[str, list[Event]]] = []
    for phase, event in with_phases(events):
        if groups and groups[-1][0] == phase:
            groups[-1][1].append(event)
        else:
            groups.append((phase, [event]))
    return groups


def phase_started(events: Iterable[Event], phase: str) -> datetime | None:
    """When the incident first entered `phase`, if it did."""
    return next((event.at for p, event in with_phases(events) if p == phase), None)


def plain(text: str) -> str:
    """A timeline line (mrkdwn) as plain text: `<@U1>` → `@U1`, `<url|label>` → `label`, entities decoded."""

    def token(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or target[1:])
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!date^"):
            return label
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return label or target

    out = _TOKEN.sub(token, text)
    for entity, char in _ENTITIES:
        out = out.replace(entity, char)
    return out


def from_slack(text: str) -> str:
    """A Slack message's text made safe to repeat in the bot's own messages.

    User mentions stay mentions; `<!channel>`, `<!here>` and the like become plain words; links
    and channel references keep their label. What remains is escaped the way Slack sent it.
    """

    def token(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if re.fullmatch(r"@[UW][A-Z0-9]+", target):
            return f"<{target}>"
        if target.startswith("!"):
            name = label or target[1:].split("^")[0]
            return "@" + name.replace("<", "&lt;").replace(">", "&gt;")
        shown = label or target.lstrip("#@")
        return shown.replace("<", "&lt;").replace(">", "&gt;")

    return _TOKEN.sub(token, text)


def ts_time(ts: str) -> datetime:
    """A Slack message ts (`1764400000.123456`) as the moment it was posted."""
    return datetime.fromtimestamp(float(ts), UTC)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
