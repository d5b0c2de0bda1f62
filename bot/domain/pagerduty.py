"""PagerDuty, as the bot sees it: which Events API v2 events a change owes, and what they say.

Pure: no I/O, no clock. Each event is a delivery of kind `pagerduty` whose target is the
event action (`trigger`, `acknowledge`, `resolve`) or `links` (one more trigger with the same
`dedup_key`, carrying the links to the war room and the announcement once they exist). It is
recorded in the same transaction as the change that owes it, and the event's body is built when
it is sent, from the incident as stored then.

The `dedup_key` is derived from the incident (its number and the second it was declared), so it
is the same on every instance and after every restart, and a database started afresh never
reuses the key of an older INC-1.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bot.core.text import escape, plain
from bot.domain.deliveries import Delivery, DeliveryKind, DeliveryStatus, Firing
from bot.domain.incidents import Incident
from bot.domain.policy import PagerDutyConfig
from bot.domain.records import DeliveryRecord

# Our severities as PagerDuty's `payload.severity` (the README's table says the same).
SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info"}
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_MAX = 1024  # PagerDuty's limit on payload.summary
DEDUP_KEY_MAX = 255
CLIENT = "incident-bot"
# Who acknowledged in PagerDuty, when no Slack user could be found for them: stored as the
# acknowledger in place of a Slack user ID, shown as "<name> in PagerDuty".
OUTSIDE_PREFIX = "pagerduty:"
_KEY = re.compile(r"\Aincident-bot:INC-(?P<number>[1-9][0-9]{0,9}):(?P<declared>[0-9]{1,12})\Z")


class EventAction(StrEnum):
    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


LINKS = "links"  # a delivery's target: the trigger again, once the links exist


def dedup_key(incident: Incident) -> str:
    return f"incident-bot:{incident.ref}:{int(incident.declared_at.timestamp())}"


def key_number(key: object) -> int | None:
    """The incident number a dedup key of ours names; None for anyone else's key."""
    if not isinstance(key, str):
        return None
    match = _KEY.match(key)
    return int(match["number"]) if match else None


def pages(config: PagerDutyConfig | None, severity: str) -> bool:
    return config is not None and severity in config.severities


def firing(target: str) -> Firing:
    """One event owed to PagerDuty, as a delivery (keys are unique: each change owes its own)."""
    return Firing(f"pagerduty:{target}:{uuid.uuid4().hex[:12]}", (Delivery(DeliveryKind.PAGERDUTY, target),))


def on_declare(config: PagerDutyConfig | None, incident: Incident) -> list[Firing]:
    """A listed severity: the trigger at once, and the links once the war room exists."""
    if not pages(config, incident.severity):
        return []
    return [firing(EventAction.TRIGGER), firing(LINKS)]


def on_acknowledge(config: PagerDutyConfig | None, incident: Incident) -> list[Firing]:
    return [firing(EventAction.ACKNOWLEDGE)] if pages(config, incident.severity) else []


def on_resolve(config: PagerDutyConfig | None, incident: Incident) -> list[Firing]:
    return [firing(EventAction.RESOLVE)] if pages(config, incident.severity) else []


def on_reopen(config: PagerDutyConfig | None, incident: Incident) -> list[Firing]:
    return [firing(EventAction.TRIGGER)] if pages(config, incident.severity) else []


def on_severity(config: PagerDutyConfig | None, old: str, incident: Incident) -> list[Firing]:
    """Into the list: triggered, unless someone is on it already (nobody needs a phone call then);
    out of it: resolved."""
    before, after = pages(config, old), pages(config, incident.severity)
    if after and not before:
        return [firing(EventAction.TRIGGER)] if incident.acknowledged_at is None else []
    if before and not after:
        return [firing(EventAction.RESOLVE)]
    return []


def summary(incident: Incident, label: str) -> str:
    """ "INC-7 P1 · Critical: Checkout returns 500", within PagerDuty's 1024 characters."""
    text = f"{incident.ref} {incident.severity} · {label}: {plain(incident.title)}"
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def event(
    incident: Incident,
    action: str,
    *,
    routing_key: str,
    source: str,
    label: str,
    links: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The Events API v2 body. An acknowledge or resolve names only the key; a trigger says it all."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": EventAction.TRIGGER if action == LINKS else action,
        "dedup_key": dedup_key(incident),
    }
    if body["event_action"] != EventAction.TRIGGER:
        return body
    details: dict[str, Any] = {
        "incident": incident.ref,
        "severity": incident.severity,
        "status": incident.status,
        "commander": incident.commander,
        "declared_by": incident.declared_by,
    }
    if incident.acknowledged_by:
        details["acknowledged_by"] = incident.acknowledged_by
    body["payload"] = {
        "summary": summary(incident, label),
        "source": source or CLIENT,
        "severity": SEVERITY.get(incident.severity, "error"),
        "timestamp": _iso(incident.detected),
        "component": source or CLIENT,
        "class": "incident",
        "custom_details": details,
    }
    body["client"] = CLIENT
    if links:
        body["links"] = links
    return body


def outside_person(name: str) -> str:
    """The acknowledger for someone known only to PagerDuty (see OUTSIDE_PREFIX)."""
    cleaned = " ".join(plain(name).split())[:80] or "someone"
    return OUTSIDE_PREFIX + cleaned


def outside_name(ref: str) -> str | None:
    """The PagerDuty name behind an acknowledger made by `outside_person`; None for a Slack user."""
    return ref[len(OUTSIDE_PREFIX) :] if ref.startswith(OUTSIDE_PREFIX) else None


def person(ref: str, *, where: bool = True) -> str:
    """An acknowledger in mrkdwn: a live mention, or "Dana Cruz in PagerDuty" (escaped; without
    " in PagerDuty" when the sentence says so already)."""
    name = outside_name(ref)
    if name is None:
        return f"<@{ref}>"
    return f"{escape(name)} in PagerDuty" if where else escape(name)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def resolved_by_us(events: Sequence[DeliveryRecord]) -> bool:
    """Whether a resolve PagerDuty reports is most likely the echo of the bot's own: the newest
    event the bot sent or still owes PagerDuty for the incident (one refused or dropped aside) is
    a resolve. PagerDuty announces every change, also those made through the Events API, so a
    severity lowered out of the list comes back as `incident.resolved` for an incident still open."""
    live = [e for e in events if e.status != DeliveryStatus.CANCELLED]
    return bool(live) and max(live, key=lambda e: e.id).target == EventAction.RESOLVE
