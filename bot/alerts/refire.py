"""A resolved incident's alert group firing again: its one message, posted then edited.

The store decides what a firing alert is (`bot.domain.refires.fate`) and, for a re-fire, records
an `alert_refire` delivery in the alert's own transaction; a reopen records one more, to take the
button off. This is that delivery's sender. Each send shows the message as the store has it now:
posted once under its key (the attempt noted first, so a post cut short by a crash is found in
Slack, not posted twice), then edited in place; edits that pile up collapse into the latest, as
the announcement's do, so a flapping group costs one post and at most one edit in flight.

Where: the incident's war room if it has one (its responders are there, and its other alert
lines went there); else the announcement's thread, also shown in the channel, since a reply in
the thread of a resolved incident reaches nobody who is not following it, and the channel is
where a fresh incident would have been seen.
"""

from __future__ import annotations

import json
from datetime import datetime

from bot.context import Context
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet
from bot.delivery.once import post_once
from bot.domain.deliveries import DeliveryKind
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord, EventKind
from bot.domain.refires import resolution_of
from bot.slack.blocks import alerts as alert_blocks


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
        known = ctx.store.posted(key)
        if known is not None:
            ctx.slack.update(known[0], known[1], text, blocks)
            return True
        if incident.war_room_id:
            channel, thread_ts, broadcast = incident.war_room_id, None, False
        elif incident.announcement_channel and incident.announcement_ts:
            channel, thread_ts, broadcast = incident.announcement_channel, incident.announcement_ts, True
        else:
            raise NotPlacedYet("the incident has neither a war room nor an announcement")
        posted = post_once(ctx.store, ctx.slack, ctx.now(), key, channel, text, blocks, thread_ts, broadcast=broadcast)
        ctx.store.note_posted(key, posted[0], posted[1], ctx.now())
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


def _reopened_since(ctx: Context, number: int, resolved_at: datetime) -> tuple[str, datetime] | None:
    """Who reopened the incident after that resolution (to the second), and when; None if nobody."""
    for event in ctx.store.timeline(number):
        if event.kind == EventKind.REOPEN and event.at >= resolved_at:
            return event.actor, event.at
    return None
