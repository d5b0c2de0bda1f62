"""The pacer's buckets against Slack's (bot.slack.tiers): a little under in rate and burst, and one
bucket for a channel however a post names it. Time is an injected clock; nothing sleeps."""

from __future__ import annotations

import threading
import time

import pytest

from bot.slack import pacing, tiers
from bot.slack.pacing import Pacer, Saturated, pace


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def burst(pacer: Pacer, method: str, channel: str | None = None) -> int:
    """How many calls get a token at once, before one would wait."""
    taken = 0
    with pace(pacing.Lane.PEOPLE, max_wait_s=0.01):
        while taken < 100:
            try:
                pacer.acquire(method, channel)
            except Saturated:
                return taken
            taken += 1
    return taken


def test_each_bucket_is_slacks_a_little_under_in_rate_and_burst():
    for tier, rate in [
        (tiers.Tier.TIER_2, pacing.TIER_2),
        (tiers.Tier.TIER_3, pacing.TIER_3),
        (tiers.Tier.TIER_4, pacing.TIER_4),
    ]:
        slack = tiers.TIER_LIMITS[tier]
        assert slack.per_minute * 0.95 <= rate.per_minute < slack.per_minute
        assert rate.burst == slack.burst - 1
    assert tiers.POST_PER_CHANNEL.per_minute * 0.95 <= pacing.POST_PER_CHANNEL.per_minute < 60
    assert pacing.POST_PER_CHANNEL.burst == tiers.POST_PER_CHANNEL.burst - 1


def test_a_channel_posted_to_by_name_and_by_id_is_one_bucket():
    clock = Clock()
    pacer = Pacer(clock=clock)
    per_channel = pacing.POST_PER_CHANNEL.burst
    assert burst(pacer, "chat.postMessage", "incident-response") == per_channel
    pacer.learn_channel("incident-response", "C0INCIDENT")
    # Slack counted those posts against C0INCIDENT: its burst is spent, by ID as by name.
    assert burst(pacer, "chat.postMessage", "C0INCIDENT") == 0
    assert burst(pacer, "chat.postMessage", "incident-response") == 0
    clock.now += 60 / pacing.POST_PER_CHANNEL.per_minute + 0.01
    assert burst(pacer, "chat.postMessage", "C0INCIDENT") == 1


def test_both_names_spent_count_once_merged():
    clock = Clock()
    pacer = Pacer(clock=clock)
    assert burst(pacer, "chat.postMessage", "C0INCIDENT") == pacing.POST_PER_CHANNEL.burst
    clock.now += 2 * 60 / pacing.POST_PER_CHANNEL.per_minute + 0.01  # two tokens back
    with pace(pacing.Lane.PEOPLE, max_wait_s=0.01):
        pacer.acquire("chat.postMessage", "incident-response")  # a fresh bucket by name: one spent
    pacer.learn_channel("incident-response", "C0INCIDENT")
    assert burst(pacer, "chat.postMessage", "C0INCIDENT") == 1


def test_wait_for_counts_the_calls_already_waiting_and_takes_nothing():
    clock = Clock()
    pacer = Pacer(clock=clock)
    assert pacer.wait_for("conversations.create") == 0
    assert burst(pacer, "conversations.create") == pacing.TIER_2.burst
    wait = pacer.wait_for("conversations.create")
    assert wait == pytest.approx(60 / pacing.TIER_2.per_minute)
    assert pacer.wait_for("conversations.create") == wait  # asking took no token


def test_a_call_waiting_for_its_channel_holds_up_no_call_to_another_channel():
    clock = Clock()
    pacer = Pacer(clock=clock)
    assert burst(pacer, "chat.postMessage", "D0PRIMARY") == pacing.POST_PER_CHANNEL.burst
    waiting = threading.Thread(target=pacer.acquire, args=("chat.postMessage", "D0PRIMARY"), daemon=True)
    waiting.start()  # a page (the most urgent lane) waits for its DM's next token
    deadline = time.monotonic() + 5
    while not any(b.waiting for b in pacer._buckets.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    # A less urgent post to another channel: the workspace bucket has tokens, so it goes at once.
    with pace(pacing.Lane.BACKGROUND, max_wait_s=0.01):
        pacer.acquire("chat.postMessage", "C0INCIDENT")
    clock.now += 60 / pacing.POST_PER_CHANNEL.per_minute + 0.01
    waiting.join(timeout=5)
    assert not waiting.is_alive()
