"""A :pushpin: on a war-room message puts that message into the timeline, at its own time.

Slack sends `reaction_added` through the Events API; the message itself is fetched with
conversations.history (or conversations.replies for a thread reply). One message makes one
timeline line, however many people pin it and however often Slack retries the event: the store
records the message's (channel, ts) with the line in one transaction. Reactions outside a war
room, other emoji and messages deleted before they could be read are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.context import Context
from bot.mrkdwn import escape, truncate
from bot.timeline import from_slack, ts_time

log = logging.getLogger(__name__)

PIN_REACTIONS = frozenset({"pushpin", "round_pushpin"})
PIN_TEXT_MAX = 1500


def on_reaction_added(ctx: Context, event: dict[str, Any]) -> None:
    """Runs after the event is acked (fetching the message is a Slack call)."""
    if event.get("reaction") not in PIN_REACTIONS:
        return
    item = event.get("item") or {}
    channel, ts = item.get("channel"), item.get("ts")
    if item.get("type") != "message" or not isinstance(channel, str) or not isinstance(ts, str):
        return
    incident = ctx.store.by_war_room(channel)
    if incident is None:
        return  # not a war room: a pin elsewhere is nobody's timeline
    message = ctx.slack.message(channel, ts)
    if message is None:
        log.info("%s: the pinned message %s is gone; nothing to capture", incident.ref, ts)
        return
    user = message.get("user")
    who = f"<@{user}>" if user else escape(str(message.get("username") or "a bot"))
    text = truncate(from_slack(str(message.get("text") or "")), PIN_TEXT_MAX) or "_(no text)_"
    pinned_by = str(event.get("user") or "")
    captured = ctx.store.add_pinned(
        incident.number, channel, ts, ts_time(ts), user or pinned_by, f"📌 {who}: {text}", ctx.now()
    )
    if captured:
        log.info("%s: captured the message %s into the timeline", incident.ref, ts)
