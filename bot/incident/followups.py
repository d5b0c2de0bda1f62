"""What a saved change owes Slack: its lines in the war room and the announcement thread, and
the announcement's edit (the pages' buttons are closed by `bot.paging.pager`).

These are deliveries, written in the change's own transaction (`bot.domain.deliveries.said`),
so a SIGKILL right after the ack loses none of them, and the dispatcher sends them like pages:
retried until Slack accepts them, across restarts. Each post carries its delivery's key in its
metadata, so a post under way when the process died is looked up in Slack rather than sent twice.
Announcement edits that pile up (a slow or rate-limited Slack) collapse into the latest (the
dispatcher's rule for every edit, `Route.edits`): an edit shows the incident as stored when it is
sent, so the latest shows every change before it, and the earlier ones are marked superseded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from bot.context import Announcing
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet
from bot.delivery.once import post_delivery
from bot.domain.deliveries import DeliveryKind
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import SlackGateway
from bot.store import Store


def routes(
    store: Store, slack: SlackGateway, announcer: Announcing, clock: Callable[[], datetime]
) -> dict[DeliveryKind, Route]:
    def refresh(delivery: DeliveryRecord, incident: Incident) -> None:
        announcer.refresh(incident.number)  # the incident as stored now
        store.finish_delivery(delivery.id, clock(), user=None, channel=None, ts=None)

    def post(delivery: DeliveryRecord, incident: Incident) -> None:
        payload = json.loads(delivery.detail or "{}")
        if delivery.target == "war_room":
            channel, thread_ts = incident.war_room_id, None
        elif delivery.target == "thread":
            channel, thread_ts = incident.announcement_channel, incident.announcement_ts
            if not thread_ts:
                raise NotPlacedYet("the incident is not announced yet")
        else:
            channel, thread_ts = payload.get("channel"), payload.get("thread_ts")
        if not channel:
            store.cancel_delivery(delivery.id, f"nowhere to post ({delivery.target})")
            return
        post_delivery(
            store,
            slack,
            clock(),
            delivery,
            channel,
            payload.get("text") or "",
            payload.get("blocks"),
            thread_ts=thread_ts,
        )

    return {
        # Every refresh edits the incident's one announcement.
        DeliveryKind.REFRESH: Route(refresh, edits=lambda delivery, incident: "announcement"),
        DeliveryKind.POST: Route(post),
    }
