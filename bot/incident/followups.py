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
from typing import Any

from bot.context import Announcing
from bot.delivery.dispatch import Line, Route
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
        channel, thread_ts = _place(delivery, incident, payload)
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
        # A line without blocks may share one message with the lines owed to its place at once.
        DeliveryKind.POST: Route(post, line=_line),
    }


def _place(delivery: DeliveryRecord, incident: Incident, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """Where a post goes: (channel, thread ts); NotPlacedYet while the announcement is to come."""
    if delivery.target == "war_room":
        return incident.war_room_id, None
    if delivery.target == "thread":
        if not incident.announcement_ts:
            raise NotPlacedYet("the incident is not announced yet")
        return incident.announcement_channel, incident.announcement_ts
    return payload.get("channel"), payload.get("thread_ts")


def _line(delivery: DeliveryRecord, incident: Incident) -> Line | None:
    """A post of text alone (no blocks: nothing to press, nothing a later edit targets) as a line."""
    payload = json.loads(delivery.detail or "{}")
    if payload.get("blocks") or not payload.get("text"):
        return None
    channel, thread_ts = _place(delivery, incident, payload)
    return Line(channel, thread_ts, payload["text"]) if channel else None
