"""A :pushpin: on a war-room message puts that message into the timeline, at its own time.

Slack sends `reaction_added` through the Events API; the message itself is fetched with
conversations.history (or conversations.replies for a thread reply). One message makes one
timeline line, however many people pin it and however often Slack retries the event: the store
records the message's (channel, ts) with the line in one transaction. Reactions outside a war
room, other emoji and messages deleted before they could be read are ignored.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.core.mrkdwn import escape, truncate
from bot.domain.timeline import from_slack, ts_time
from bot.slack import payloads
from bot.slack.gateway import error_code

log = logging.getLogger(__name__)

PIN_REACTIONS = frozenset({"pushpin", "round_pushpin"})
PIN_TEXT_MAX = 1500
_MESSAGE_TS = re.compile(r"\d{1,12}\.\d{1,9}")  # Slack's `1764400000.123456`


def on_reaction_added(ctx: Context, event: dict[str, Any]) -> None:
    """Runs after the event is acked (fetching the message is a Slack call)."""
    if payloads.text_at(event, "reaction") not in PIN_REACTIONS:
        return
    item = payloads.object_at(event, "item")
    channel, ts = payloads.text_at(item, "channel"), payloads.text_at(item, "ts")
    if payloads.text_at(item, "type") != "message" or not channel or not _MESSAGE_TS.fullmatch(ts):
        return
    incident = ctx.store.by_war_room(channel)
    if incident is None:
        return  # not a war room: a pin elsewhere is nobody's timeline
    try:
        message = ctx.slack.message(channel, ts)
    except SlackApiError as exc:  # the bot was removed from the room, the channel archived...
        log.warning("%s: could not read the pinned message %s (%s)", incident.ref, ts, error_code(exc))
        return
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
