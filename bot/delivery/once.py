"""Posting a message that must appear once, even if the process dies mid-post."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery.errors import transient
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import SlackGateway, error_code
from bot.store import Store

log = logging.getLogger(__name__)


def key(delivery: DeliveryRecord) -> str:
    """The key a delivery's post carries in its metadata, so Slack's history can say it landed."""
    return f"delivery:{delivery.id}"


def post_once(
    store: Store,
    slack: SlackGateway,
    now: datetime,
    key: str,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
    channel_id: str | None = None,
    *,
    broadcast: bool = False,
) -> tuple[str, str]:
    """Post under `key` once: the attempt is noted before posting; if a previous attempt was cut
    short, Slack's history (searched by the key in the message's metadata) says whether it landed.
    `channel_id` is where to search when `channel` is a name; `broadcast` also shows a thread
    reply in the channel."""
    earlier = store.attempt(key)
    if earlier is not None:
        try:
            ts = slack.find_posted(earlier.channel, key, earlier.at.timestamp() - 1, earlier.thread_ts)
        except SlackApiError as exc:
            # Slack refused to show the history: when in doubt, post, a lost message is worse.
            # A rate limit or an outage says nothing yet: the caller's retry asks again.
            if transient(exc):
                raise
            log.warning("could not check whether %s was posted: %s", key, error_code(exc))
            ts = None
        if ts is not None:
            return earlier.channel, ts
    store.note_attempt(key, channel_id or channel, now, thread_ts)
    if broadcast:
        return slack.post(channel, text, blocks, thread_ts=thread_ts, key=key, broadcast=True)
    return slack.post(channel, text, blocks, thread_ts=thread_ts, key=key)


def post_delivery(
    store: Store,
    slack: SlackGateway,
    now: datetime,
    delivery: DeliveryRecord,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    *,
    user: str | None = None,
    thread_ts: str | None = None,
) -> tuple[str, str]:
    """A delivery's message: where it goes is stored before posting (so start-up can ask Slack
    whether it landed), and the delivery is recorded as sent once Slack accepted it."""
    store.set_delivery_channel(delivery.id, channel, user, thread_ts)
    posted, ts = slack.post(channel, text, blocks, thread_ts=thread_ts, key=key(delivery))
    store.finish_delivery(delivery.id, now, user=user, channel=posted, ts=ts)
    return posted, ts
