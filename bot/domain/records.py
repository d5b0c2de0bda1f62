"""What the store knows, read back: the row types of its tables, frozen. No I/O.

The store (`bot.store`) writes and reads them; the domain rules (timeline, post-mortem, stats)
and the features take them as given, so none of them imports the store for a type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """What a timeline line records. The values are what the store holds: never rename one."""

    DECLARE = "declare"
    ACK = "ack"
    UPDATE = "update"
    SEVERITY = "severity"
    ROLE = "role"
    SNOOZE = "snooze"
    FIX = "fix"  # the fix clock stopped: a diagnose, a confirmed change, an "identified" update
    NOTE = "note"
    PIN = "pin"  # a war-room message pinned into the timeline
    FOLLOWUP = "followup"
    DIAGNOSE = "diagnose"
    ALERT = "alert"  # an alert attached to the incident
    ALERT_CLOSED = "alert_closed"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    # A proposed production change: `<action>-<what became of it>` (see `proposal_event`).
    ROLLBACK_PROPOSED = "rollback-proposed"
    ROLLBACK_CANCELLED = "rollback-cancelled"
    ROLLBACK_SUCCEEDED = "rollback-succeeded"
    ROLLBACK_FAILED = "rollback-failed"
    ROLLBACK_UNKNOWN = "rollback-unknown"
    SCALE_PROPOSED = "scale-proposed"
    SCALE_CANCELLED = "scale-cancelled"
    SCALE_SUCCEEDED = "scale-succeeded"
    SCALE_FAILED = "scale-failed"
    SCALE_UNKNOWN = "scale-unknown"
    # The runbook's VERIFY step (bot/domain/verify.py).
    VERIFY_STARTED = "verify-started"
    VERIFY_HELD = "verify-held"
    VERIFY_REGRESSED = "verify-regressed"


def proposal_event(action: str, what: str) -> EventKind:
    """The event of a proposal's `action` (rollback, scale) that was `what` (proposed, cancelled,
    or the status it finished in)."""
    return EventKind(f"{action}-{what}")


@dataclass(frozen=True)
class Event:
    """A timeline line: what happened, who did it, when."""

    incident: int
    at: datetime
    kind: str  # an EventKind, kept as stored: a kind a newer instance wrote must not break a read
    actor: str
    text: str


@dataclass(frozen=True)
class DeliveryRecord:
    """A message the bot owes (a page, an FYI, a warning) and how far its sending got."""

    id: int
    incident: int
    firing_key: str
    kind: str
    target: str
    detail: str
    status: str  # pending | sending | sent | cancelled
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    user: str | None
    channel: str | None
    ts: str | None
    thread_ts: str | None = None


@dataclass(frozen=True)
class Attempt:
    """A post that was about to be made: where, when, and under which thread."""

    channel: str
    at: datetime
    thread_ts: str | None


@dataclass(frozen=True)
class AuditRecord:
    incident: int | None  # None: a refusal made before any incident was at hand
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Resolution:
    """What the resolver said: the summary, and the resolve form's root cause and customer impact."""

    actor: str
    summary: str | None = None
    root_cause: str | None = None
    customer_impact: str | None = None


@dataclass(frozen=True)
class FollowUp:
    id: int
    incident: int
    at: datetime
    actor: str
    text: str


@dataclass(frozen=True)
class Draft:
    """The post-mortem draft as last generated, and where it was uploaded."""

    incident: int
    markdown: str
    generated_at: datetime
    file_id: str | None
    permalink: str | None
    channel: str | None


@dataclass(frozen=True)
class StatRow:
    number: int
    severity: str
    declared_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    detected_at: datetime | None = None

    @property
    def detected(self) -> datetime:
        """Where time to acknowledge and to resolve start: the alert's start, else the declare."""
        return self.detected_at or self.declared_at


@dataclass(frozen=True)
class Lease:
    holder: str
    token: int  # the fencing token: increased by every takeover
    acquired_at: float  # seconds since the epoch, by the database's clock
    renewed_at: float
    expires_at: float
    now: float  # the database's clock when this was read


@dataclass(frozen=True)
class HandoffNotice:
    """A DM owed to the person coming on call (`side` = in) or going off (out) at a handoff."""

    id: int
    schedule: str
    at: datetime
    side: str
    user: str
    text: str


@dataclass(frozen=True)
class AlertRecord:
    """An alert as the store knows it, and how far showing it in Slack got."""

    id: int
    source: str
    alert_id: str
    group_key: str
    policy: str
    condition: str
    summary: str
    url: str | None
    labels: dict[str, str]
    severity: str
    action: str
    started_at: datetime
    ended_at: datetime | None
    received_at: datetime
    last_seen_at: datetime
    notifications: int
    closed_at: datetime | None
    incident: int | None
    proposal_channel: str | None
    proposal_ts: str | None
    dismissed_by: str | None
    link_noted: bool
    close_noted: bool
    # The resolved incident this alert fired again soon after (bot/domain/refires.py): posted in
    # it, with a Reopen button, instead of declared or proposed. Attached to it if it reopens.
    refire_of: int | None = None

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


@dataclass(frozen=True)
class AlertReceipt:
    record: AlertRecord | None
    outcome: str  # new | attached | refire | repeat | closed | stale
