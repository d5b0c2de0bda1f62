"""The incident lifecycle as pure functions: state in, new state out. No I/O, no clock.

Every function that changes an incident returns a `Change`: the new state plus the line the
timeline should show. The store applies a change in one transaction and derives the audit
record from the difference between the old and new state, so no change can skip the audit.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.core.durations import humanize
from bot.core.errors import UsageError
from bot.core.text import escape, for_slack, plain
from bot.domain.policy import SEVERITIES, Config
from bot.domain.records import EventKind

TITLE_MAX = 150
STATUSES = ("investigating", "identified", "monitoring", "resolved")
FIX_STATUSES = ("identified", "monitoring")  # an update saying so means the fix is under way
CHANNEL_NAME_MAX = 80
WAR_ROOM_NAME_MAX = 48  # well under Slack's 80: see war_room_name


@dataclass(frozen=True)
class Incident:
    number: int
    title: str
    severity: str
    status: str
    commander: str
    declared_by: str
    declared_at: datetime
    last_update_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    summary: str | None = None
    scribe: str | None = None
    comms: str | None = None
    announcement_channel: str | None = None
    announcement_ts: str | None = None
    war_room_id: str | None = None
    war_room_name: str | None = None
    war_room_briefed: bool = False
    snoozed_until: datetime | None = None
    fix_started_at: datetime | None = None
    statuspage_id: str | None = None
    detected_at: datetime | None = None  # when the alert behind it started firing, if one did
    version: int = 0

    @property
    def ref(self) -> str:
        return f"INC-{self.number}"

    @property
    def is_open(self) -> bool:
        return self.status != "resolved"

    @property
    def detected(self) -> datetime:
        """When the problem was first known: the alert's start, else the declare. Time to
        acknowledge and the post-mortem's timeline measure from here, as the runbook does."""
        return self.detected_at or self.declared_at

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        return self.acknowledged_at - self.detected if self.acknowledged_at else None

    def role_holder(self, role: str) -> str | None:
        return {"commander": self.commander, "scribe": self.scribe, "comms": self.comms}.get(role)


@dataclass(frozen=True)
class Change:
    """A decided state change: what the incident becomes, and what the timeline says about it."""

    incident: Incident
    kind: EventKind
    actor: str
    text: str


def parse_severity(text: str | None, usage: str) -> str:
    """`p1`/`P1`/`1` -> `P1`; anything else is a UsageError naming the choices."""
    choices = "p1 (critical), p2 (high), p3 (medium) or p4 (low)"
    if not text:
        raise UsageError(f"Which severity? Use {choices}.", usage)
    candidate = text.strip().upper()
    if candidate in {"1", "2", "3", "4"}:
        candidate = "P" + candidate
    if candidate not in SEVERITIES:
        shown = text if len(text) <= 20 else text[:20] + "…"
        raise UsageError(f"`{clean_inline(shown)}` is not a severity. Use {choices}.", usage)
    return candidate


def clean_title(text: str) -> str:
    """One line of printable text: newlines and control characters folded to spaces."""
    # Only control characters (Cc) and line/paragraph separators: format characters such as
    # the zero-width joiner hold emoji sequences and some scripts together.
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Zl", "Zp"} else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def clean_inline(text: str) -> str:
    """Text safe to quote back inside backticks in a reply: one line, nothing live."""
    return escape(clean_title(text)).replace("`", "'")


def validate_title(text: str, usage: str) -> str:
    title = clean_title(text)
    shown = plain(title)
    if not any(unicodedata.category(ch)[0] not in "CZ" for ch in shown):  # nothing visible
        raise UsageError("The incident needs a title.", usage)
    if len(shown) > TITLE_MAX:
        raise UsageError(
            f"Titles are limited to {TITLE_MAX} characters; yours has {len(shown):,}. "
            "Use a short title and add the details with `/incident update` once it is declared.",
            usage,
        )
    return title


def war_room_name(prefix: str, number: int, title: str) -> str:
    """A valid Slack channel name: `inc-7-checkout-returns-500`, in whole words and at most
    `WAR_ROOM_NAME_MAX` characters (Slack allows 80, but a name is read in a sidebar and typed
    after `#`; an alert's sentence-long title cut mid-word at 80 helps nobody).

    Made from the title as people read it: `@carl` gives `carl`, never the user ID behind it.
    A first word longer than the whole budget is cut, as nothing else would be left.
    """
    ascii_title = unicodedata.normalize("NFKD", plain(title)).encode("ascii", "ignore").decode()
    words = [w for w in re.split(r"[^a-z0-9]+", ascii_title.lower()) if w]
    name = f"{prefix}-{number}"
    for i, word in enumerate(words):
        longer = f"{name}-{word}"
        if len(longer) > WAR_ROOM_NAME_MAX:
            if i == 0:
                name = longer[:WAR_ROOM_NAME_MAX].rstrip("-")
            break
        name = longer
    return name[:CHANNEL_NAME_MAX]


def declare(
    *,
    title: str,
    severity: str,
    by: str,
    now: datetime,
    channel: str,
    detected_at: datetime | None = None,
    commander: str | None = None,
) -> Incident:
    """A new incident, not yet numbered (the store assigns the number).

    The declarer commands it unless `commander` says otherwise (the bot declares for alerts).
    `detected_at` is the start of the alert that raised it; never later than the declare.
    """
    return Incident(
        number=0,
        title=title,
        severity=severity,
        status="investigating",
        commander=commander or by,
        declared_by=by,
        declared_at=now,
        announcement_channel=channel,
        detected_at=min(detected_at, now) if detected_at else None,
    )


def acknowledge(incident: Incident, *, by: str, now: datetime) -> Change | None:
    """None when it was already acknowledged: a second click is a no-op, not an error."""
    _require_open(incident)
    if incident.acknowledged_at is not None:
        return None
    new = replace(incident, acknowledged_at=now, acknowledged_by=by)
    return Change(new, EventKind.ACK, by, f"<@{by}> acknowledged {incident.ref}")


def resolve(incident: Incident, *, by: str, now: datetime, summary: str | None) -> Change | None:
    if not incident.is_open:
        return None
    new = replace(
        incident,
        status="resolved",
        resolved_at=now,
        resolved_by=by,
        summary=summary or None,
        acknowledged_at=incident.acknowledged_at or now,
        acknowledged_by=incident.acknowledged_by or by,
    )
    text = f"<@{by}> resolved {incident.ref}" + (f": {for_slack(summary)}" if summary else "")
    return Change(new, EventKind.RESOLVE, by, text)


def change_severity(incident: Incident, *, severity: str, by: str) -> Change | None:
    _require_open(incident)
    if severity == incident.severity:
        return None
    new = replace(incident, severity=severity)
    # P1 sorts before P2: a smaller name is a higher severity.
    verb = "🔺 raised" if severity < incident.severity else "🔻 lowered"
    return Change(new, EventKind.SEVERITY, by, f"<@{by}> {verb} severity {incident.severity} → {severity}")


def assign_role(incident: Incident, *, role: str, user: str, by: str) -> Change | None:
    _require_open(incident)
    if incident.role_holder(role) == user:
        return None
    if role == "commander":
        new = replace(incident, commander=user)
    elif role == "scribe":
        new = replace(incident, scribe=user)
    elif role == "comms":
        new = replace(incident, comms=user)
    else:
        raise UsageError(f"`{role}` is not an incident role.")
    return Change(new, EventKind.ROLE, by, f"<@{by}> made <@{user}> {role}")


def post_update(incident: Incident, *, text: str, status: str | None, by: str, now: datetime) -> Change:
    _require_open(incident)
    new = replace(incident, last_update_at=now, status=status or incident.status, snoozed_until=None)
    if new.status in FIX_STATUSES and new.fix_started_at is None:
        new = replace(new, fix_started_at=now)
    return Change(new, EventKind.UPDATE, by, f"<@{by}> posted an update ({new.status}): {for_slack(text)}")


def snooze(incident: Incident, *, until: datetime, by: str) -> Change:
    """Hold update reminders until `until`; the next update or snooze replaces it."""
    _require_open(incident)
    new = replace(incident, snoozed_until=until)
    return Change(new, EventKind.SNOOZE, by, f"<@{by}> snoozed update reminders until {until:%H:%M} UTC")


def start_fix(incident: Incident, *, by: str, now: datetime, how: str) -> Change | None:
    """The runbook's INVESTIGATE & FIX step has begun (a diagnose, a rollback): the fix clock stops."""
    if not incident.is_open or incident.fix_started_at is not None:
        return None
    return Change(replace(incident, fix_started_at=now), EventKind.FIX, by, f"<@{by}> started the fix: {how}")


def reopen(incident: Incident, *, by: str, now: datetime, reason: str | None) -> Change:
    """A resolved incident is back: open again, its update clock restarted from now.

    The last update moves to `now`, so reminders count from the reopening rather than firing
    at once for the time it spent resolved; an acknowledgement stands (someone is on it).
    """
    if incident.is_open:
        raise UsageError(f"{incident.ref} is still open; only a resolved incident can be reopened.")
    new = replace(
        incident,
        status="investigating",
        resolved_at=None,
        resolved_by=None,
        summary=None,  # the announcement must not show the old resolution as if it held
        last_update_at=now,
        snoozed_until=None,
    )
    text = f"<@{by}> reopened {incident.ref}" + (f": {escape(reason)}" if reason else "")
    return Change(new, EventKind.REOPEN, by, text)


def _require_open(incident: Incident) -> None:
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is resolved; declare a new incident if the problem is back.")


def parse_ref(token: str) -> int | None:
    """`INC-7`, `inc-7`, `#7` -> 7; anything else -> None."""
    match = re.fullmatch(r"(?:inc-?|#)(\d{1,9})", token.strip(), flags=re.IGNORECASE)
    return int(match.group(1)) if match else None


def sla_text(config: Config, severity: str) -> str:
    """`ack 5m · fix 15m · updates every 15m`, from the severity's policy."""
    policy = config.policy(severity)
    parts = []
    if policy.ack_within:
        parts.append(f"ack within {humanize(policy.ack_within)}")
    if policy.fix_within:
        parts.append(f"fix under way within {humanize(policy.fix_within)}")
    if policy.update_every:
        parts.append(f"update every {humanize(policy.update_every)}")
    return " · ".join(parts)


def declared_line(incident: Incident) -> str:
    """The timeline's first line."""
    return f"<@{incident.declared_by}> declared {incident.ref} ({incident.severity}): {for_slack(incident.title)}"
