"""Posting a message that must appear once, even if the process dies mid-post."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.delivery.errors import transient
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import SlackGateway, error_code, failure_code, rate_limited, retry_after_s
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


# A message a person is waiting for (a rollback proposal) is tried this often when Slack is rate
# limiting or failing, waiting at most this long between tries: then the person is told.
PATIENT_TRIES = 4
PATIENT_WAIT_MAX_S = 5.0


def post_patiently(
    slack: SlackGateway,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None,
    *,
    key: str,
    thread_ts: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, str]:
    """Post under `key` for a person who is waiting, through a Slack that rate limits or fails
    for a moment: a few tries, each honouring `Retry-After` (up to a bound), and before each
    retry Slack's history is asked for the key, so a post that landed without an answer is not
    posted twice. A refusal (not transient) or the last failure is raised."""
    since = time.time() - 1
    for attempt in range(PATIENT_TRIES):
        try:
            if attempt:
                found = slack.find_posted(channel, key, since, thread_ts)
                if found is not None:
                    return channel, found
            return slack.post(channel, text, blocks, thread_ts=thread_ts, key=key)
        except (SlackApiError, OSError) as exc:
            if isinstance(exc, SlackApiError) and not transient(exc):
                raise
            if attempt + 1 == PATIENT_TRIES:
                raise
            asked = None
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                asked = retry_after_s(getattr(exc.response, "headers", None))
            if asked is not None and asked > PATIENT_WAIT_MAX_S:
                raise  # a long wait: better the person hears now and tries again
            wait = asked if asked is not None else min(PATIENT_WAIT_MAX_S, 0.5 * 2**attempt)
            log.info("posting %s failed (%s); trying again in %.1f s", key, failure_code(exc), wait)
            sleep(wait)
    raise AssertionError("unreachable")


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
