"""A resolved incident's alert group firing again: its one message, posted then edited.

The store decides what a firing alert is (`bot.domain.refires.fate`) and, for a re-fire, records
an `alert_refire` delivery in the alert's own transaction; a reopen records one more, to take the
button off. This is that delivery's sender. Each send shows the message as the store has it now:
posted once under its key (the attempt noted first, so a post cut short by a crash is found in
Slack, not posted twice), then edited in place; edits that pile up collapse into the latest, as
the announcement's do, so a flapping group costs one post and at most one edit in flight.

Where: the incident's war room if it has one (its responders are there, and its alerts' closing
lines went there), and the announcement's thread, where its alerts' group message is, also sent
to the channel: nobody was paged, a reply under a resolved incident reaches only those who
follow its thread, and the channel is where the fresh incident it stands for would have been
seen. One message in each place, both edited together; a war room archived since is skipped.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet
from bot.delivery.once import post_once
from bot.domain.deliveries import DeliveryKind
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord, EventKind
from bot.domain.refires import resolution_of
from bot.slack.blocks import alerts as alert_blocks
from bot.slack.blocks.incident import Block
from bot.slack.gateway import error_code

log = logging.getLogger(__name__)

# A war room that is no more: the message is shown in the announcement's thread only.
GONE = frozenset({"is_archived", "channel_not_found", "not_in_channel"})


def routes(ctx: Context) -> dict[DeliveryKind, Route]:
    def send(delivery: DeliveryRecord, incident: Incident) -> None:
        if not show(delivery.target, json.loads(delivery.detail or "{}"), incident):
            ctx.store.cancel_delivery(delivery.id, "no re-fire to show")
            return
        ctx.store.finish_delivery(delivery.id, ctx.now(), user=None, channel=None, ts=None)

    def show(key: str, group: dict[str, str], incident: Incident) -> bool:
        resolved_at = resolution_of(key)
        if resolved_at is None:
            return False
        reopened = _reopened_since(ctx, incident.number, resolved_at)
        alerts = ctx.store.refire_alerts(incident.number, key, group, reopened[1] if reopened else None)
        if not alerts:
            return False
        text, blocks = alert_blocks.refire(alerts, incident.number, resolved_at, reopened)
        places: list[tuple[str, str, str | None]] = []
        if incident.war_room_id:
            places.append(("room", incident.war_room_id, None))
        if incident.announcement_channel and incident.announcement_ts:
            places.append(("thread", incident.announcement_channel, incident.announcement_ts))
        if not places:
            raise NotPlacedYet("the incident has neither a war room nor an announcement")
        for place, channel, thread_ts in places:
            try:
                _show_in(ctx, f"{key}:{place}", channel, thread_ts, text, blocks)
            except SlackApiError as exc:
                if place != "room" or error_code(exc) not in GONE:
                    raise
                # The war room is archived or gone: the announcement's thread still says it.
                log.warning("re-fire of INC-%s not shown in its war room: %s", incident.number, error_code(exc))
        return True

    # A send cut short is sent again: the post is found by its key, an edit is the same edit.
    # Every delivery of one key shows that message as stored when it is sent, so the ones that
    # pile up collapse into the latest (the dispatcher's rule for edits, `Route.edits`).
    return {
        DeliveryKind.ALERT_REFIRE: Route(
            send,
            landed=lambda delivery, incident, since: False,
            edits=lambda delivery, incident: delivery.target,
        )
    }


def _show_in(ctx: Context, key: str, channel: str, thread_ts: str | None, text: str, blocks: list[Block]) -> None:
    """Post the message under `key` once, then edit it; a thread reply is also sent to the channel."""
    known = ctx.store.posted(key)
    if known is not None:
        ctx.slack.update(known[0], known[1], text, blocks)
        return
    broadcast = thread_ts is not None
    posted = post_once(ctx.store, ctx.slack, ctx.now(), key, channel, text, blocks, thread_ts, broadcast=broadcast)
    ctx.store.note_posted(key, posted[0], posted[1], ctx.now())


def _reopened_since(ctx: Context, number: int, resolved_at: datetime) -> tuple[str, datetime] | None:
    """Who reopened the incident after that resolution (to the second), and when; None if nobody."""
    for event in ctx.store.timeline(number):
        if event.kind == EventKind.REOPEN and event.at >= resolved_at:
            return event.actor, event.at
    return None
