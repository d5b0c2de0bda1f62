"""What the bot owes someone: deliveries, their kinds and statuses, and the decisions that make them.

A `Firing` is a decision that something is due (a key the store remembers, so it is decided
once) and the deliveries it owes. The store keeps each delivery as a row until Slack (or the
status page) accepts it; `bot.delivery` sends each kind with the sender registered for it.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bot.domain.incidents import Incident


class DeliveryKind(StrEnum):
    """Every kind of delivery. The values are what the store holds: never rename one."""

    PAGE = "page"  # a DM with Acknowledge, to a person on the escalation path or paged by hand
    FYI = "fyi"  # a DM to a `notify` role: told, no ack needed
    PAGED_NOTE = "paged_note"  # "Paged @x (step 1 of the P1 path)" in the war room
    SLA_BREACH = "sla_breach"  # the ack SLA passed with nobody acknowledging
    REMINDER = "reminder"  # "no update for 15 min" to the commander, in the war room
    REMINDER_ESCALATION = "reminder_escalation"  # a reminder ignored twice, sent on to a role
    FIX_NUDGE = "fix_nudge"  # `fix_within` passed with no fix under way
    WARNING = "warning"  # a line the bot says about itself (a delivery failing, a refusal)
    POST = "post"  # a line about a change: war room, announcement thread, or a given place
    REFRESH = "refresh"  # the announcement edited to the incident as stored
    CLOSE_PAGES = "close_pages"  # the pages' buttons taken off (and the stand-downs)
    STATUSPAGE = "statuspage"  # a status page create, update or resolve
    POSTMORTEM_DRAFT = "postmortem_draft"  # the draft uploaded to the war room
    POSTMORTEM_REMINDER = "postmortem_reminder"  # the commander reminded the post-mortem is due
    DIAGNOSE = "diagnose"  # a diagnosis: Google read, then its summary posted
    PROPOSAL_EDIT = "proposal_edit"  # a proposal's message edited to its outcome
    PAGE_LINK = "page_link"  # pages already sent edited to link the war room, once it exists
    PAGERDUTY = "pagerduty"  # an Events API v2 event (trigger, acknowledge, resolve, links)
    ALERT_REFIRE = "alert_refire"  # a resolved incident's alert group firing again: its one message


# Slack's error for a call refused by its rate limit (HTTP 429 with `Retry-After`); a delivery
# whose last error is this is waiting out Slack's `Retry-After`, and nothing may pull it forward.
RATELIMITED = "ratelimited"


# How a delivery's `last_error` starts while it waits for the announcement or war room to exist:
# those, and only those, are pulled forward when set-up makes the place (`Store.retry_unplaced`).
NOT_PLACED_YET = "not placed yet:"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # due at `next_attempt_at`
    SENDING = "sending"  # claimed by a sender; a crash leaves it here, and recovery looks it up
    SENT = "sent"  # accepted by Slack (or the status page)
    CANCELLED = "cancelled"  # moot (an ack, a resolve) or refused for good
    # An edit a later edit of the same message replaced before it was sent (`Route.edits`): not
    # sent, not failed; `last_error` names the delivery that superseded it.
    SUPERSEDED = "superseded"


# Pages (and the SLA alarm) go first and on a lane of their own.
URGENT_KINDS = frozenset({DeliveryKind.PAGE, DeliveryKind.SLA_BREACH})
# Kinds sent to a service other than Slack, on a lane of their own: that service being slow or
# down never holds up a Slack page or post (PagerDuty's events beside the first page).
OUTSIDE_KINDS = frozenset({DeliveryKind.PAGERDUTY})
# A page Slack keeps failing is tried again at least this often: waking the person matters more
# than sparing a struggling Slack one call every half minute (other kinds back off further).
URGENT_RETRY_MAX = timedelta(seconds=30)


def retry_delay(kind: str, attempts: int, base: timedelta, ceiling: timedelta) -> timedelta:
    """How long to wait before trying a delivery again after `attempts` failed tries: doubling
    from `base`, up to `ceiling` (`URGENT_RETRY_MAX` for pages and the SLA alarm)."""
    if kind in URGENT_KINDS:
        ceiling = min(ceiling, URGENT_RETRY_MAX)
    return min(ceiling, base * (2 ** min(max(attempts, 0), 10)))


@dataclass(frozen=True)
class Delivery:
    """One message the bot owes someone: sent until Slack accepts it, never dropped."""

    kind: DeliveryKind
    target: str  # a role name, user ID or email for DMs; "incident" for posts about the incident
    detail: str = ""
    after: timedelta = timedelta(0)  # due this long after it is recorded


@dataclass(frozen=True)
class Firing:
    """A decision that something is due now, and what must be sent because of it."""

    key: str
    deliveries: tuple[Delivery, ...]


def said(
    incident: Incident,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    *,
    refresh: bool = True,
    close_pages: bool | None = None,
) -> Firing:
    """A change said out loud: in the war room (if it has one) and under the announcement, with
    the announcement edited; `close_pages` True/False closes the pages with/without a stand-down."""
    deliveries: list[Delivery] = []
    if close_pages is not None:
        deliveries.append(Delivery(DeliveryKind.CLOSE_PAGES, "incident", "stand_down" if close_pages else ""))
    if refresh:
        deliveries.append(Delivery(DeliveryKind.REFRESH, "incident"))
    payload = json.dumps({"text": text, "blocks": blocks})
    if incident.war_room_id:
        deliveries.append(Delivery(DeliveryKind.POST, "war_room", payload))
    deliveries.append(Delivery(DeliveryKind.POST, "thread", payload))
    return Firing(f"said:{uuid.uuid4().hex[:12]}", tuple(deliveries))


def post_to(key: str, channel: str, thread_ts: str | None, text: str) -> Firing:
    """One message to a known place (a stand-down under a page), sent once per `key`."""
    payload = json.dumps({"text": text, "blocks": None, "channel": channel, "thread_ts": thread_ts})
    return Firing(key, (Delivery(DeliveryKind.POST, "to", payload),))


def page_links(war_room_id: str) -> Firing:
    """The war room exists: the pages sent before it are edited to link it (pages never wait for
    it), and the announcement to show it. Owed in the store with the room, so a slow or failing
    edit is retried by the delivery loop instead of failing the set-up that made the room."""
    return Firing(
        f"page_links:{war_room_id}",
        (Delivery(DeliveryKind.PAGE_LINK, "incident"), Delivery(DeliveryKind.REFRESH, "incident")),
    )


def page_link(page_id: int) -> Firing:
    """One page that landed without the war room's link, which exists now, edited to show it."""
    return Firing(f"page_link:{page_id}", (Delivery(DeliveryKind.PAGE_LINK, "incident", str(page_id)),))


def warning(key: str, text: str) -> Firing:
    """A line the bot says about itself in the war room, once per `key`."""
    return Firing(key, (Delivery(DeliveryKind.WARNING, "incident", text),))


def status_page_firing(action: str, *, status: str | None = None, body: str = "", name: str | None = None) -> Firing:
    """A status page create/update/resolve as a delivery: sent and retried like a page.

    `name` is the public incident's name on create; without one the page shows a general name.
    """
    key = "statuspage:create" if action == "create" else f"statuspage:{action}:{uuid.uuid4().hex[:12]}"
    detail = {"status": status, "body": body, **({"name": name} if name else {})}
    return Firing(key, (Delivery(DeliveryKind.STATUSPAGE, action, json.dumps(detail)),))
