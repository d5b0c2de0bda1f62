"""What a saved change owes Slack: its lines in the war room and the announcement thread, the
announcement's edit, the pages' buttons closed.

These are deliveries, written in the change's own transaction, so a SIGKILL right after the ack
loses none of them, and the delivery loop sends them like pages: retried until Slack accepts
them, across restarts. Each post carries its delivery's key in its metadata, so a post under way
when the process died is looked up in Slack (`Pager.recover`) rather than sent twice.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.domain.escalation import Delivery, Firing
from bot.domain.incidents import Incident
from bot.incident.announcer import Announcer
from bot.oncall.directory import PeopleError
from bot.slack.gateway import SlackGateway
from bot.store import DeliveryRecord, Store

# post: a message (target war_room, thread, or `to`: a channel and thread in its detail);
# refresh: edit the announcement to the incident as stored; close_pages: take the buttons off
# the pages sent (detail `stand_down`: and tell the other paged people to stand down).
KINDS = frozenset({"post", "refresh", "close_pages"})


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
        deliveries.append(Delivery("close_pages", "incident", "stand_down" if close_pages else ""))
    if refresh:
        deliveries.append(Delivery("refresh", "incident"))
    payload = json.dumps({"text": text, "blocks": blocks})
    if incident.war_room_id:
        deliveries.append(Delivery("post", "war_room", payload))
    deliveries.append(Delivery("post", "thread", payload))
    return Firing(f"said:{uuid.uuid4().hex[:12]}", tuple(deliveries))


def post_to(key: str, channel: str, thread_ts: str | None, text: str) -> Firing:
    """One message to a known place (a stand-down under a page), sent once per `key`."""
    payload = json.dumps({"text": text, "blocks": None, "channel": channel, "thread_ts": thread_ts})
    return Firing(key, (Delivery("post", "to", payload),))


def deliver(
    delivery: DeliveryRecord,
    incident: Incident,
    *,
    store: Store,
    slack: SlackGateway,
    announcer: Announcer,
    close_pages: Callable[[Incident, bool], None],
    now: datetime,
) -> None:
    if delivery.kind == "refresh":
        announcer.refresh(incident.number)
    elif delivery.kind == "close_pages":
        close_pages(incident, delivery.detail == "stand_down")
    else:
        _post(delivery, incident, store=store, slack=slack, now=now)
        return
    store.finish_delivery(delivery.id, now, user=None, channel=None, ts=None)


def _post(delivery: DeliveryRecord, incident: Incident, *, store: Store, slack: SlackGateway, now: datetime) -> None:
    payload = json.loads(delivery.detail or "{}")
    if delivery.target == "war_room":
        channel, thread_ts = incident.war_room_id, None
    elif delivery.target == "thread":
        channel, thread_ts = incident.announcement_channel, incident.announcement_ts
        if not thread_ts:
            raise PeopleError("the incident is not announced yet")
    else:
        channel, thread_ts = payload.get("channel"), payload.get("thread_ts")
    if not channel:
        store.cancel_delivery(delivery.id, f"nowhere to post ({delivery.target})")
        return
    # Stored before posting, so start-up can ask Slack whether it landed.
    store.set_delivery_channel(delivery.id, channel, None, thread_ts)
    posted, ts = slack.post(
        channel, payload.get("text") or "", payload.get("blocks"), thread_ts=thread_ts, key=f"delivery:{delivery.id}"
    )
    store.finish_delivery(delivery.id, now, user=None, channel=posted, ts=ts)
