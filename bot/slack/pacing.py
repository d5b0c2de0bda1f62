"""The bot's side of Slack's rate limits: every Web API call takes a token first, from a bucket
per method (by its tier) and, for chat.postMessage, per channel, so the bot rarely meets a 429
at all; and when tokens are short, the most urgent call goes first.

Order, when calls wait for the same bucket: `Lane` (pages and replies to people, then
announcements and their edits, then war-room set-up, then FYIs, thread lines and reminders),
then who started it (a person before an alert), then first come. A call an alert started never
takes a bucket's last token (`PEOPLES_RESERVE`): a person's call that comes while alerts keep a
bucket busy goes at once instead of at the next refill. A call says its lane and
origin with `pace(...)` around it (a context variable: the delivery loop sets it per kind, the
set-up per step, the alert intake for what alerts start). A 429 met anyway empties the bucket
for Slack's `Retry-After`, so every caller waits it out, not only the one that met it.

A caller that retries itself (the delivery loop) does not sleep long here: past `max_wait_s` it
gets `Saturated` with the wait, and reschedules the delivery for then.

The rates are Slack's published tiers (docs.slack.dev/apis/web-api/rate-limits): Tier 2 20 a
minute, Tier 3 50, Tier 4 100; chat.postMessage about one a second per channel, with short bursts.
Each bucket mirrors Slack's (bot.slack.tiers, which the sandbox enforces) a little under: the
rate 1% under and the burst one token under, so the bot is never ahead of Slack's own bucket
(the token absorbs the calls' differing latencies, the 1% the clocks'). The channel a post
names and the ID Slack answers with are one bucket (`learn_channel`).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from bot.slack import tiers


class Lane(IntEnum):
    """What a call is for, most urgent first."""

    PEOPLE = 0  # pages, and replies to a person (their command's answer, a form)
    ANNOUNCE = 1  # announcements and their edits, proposals
    SETUP = 2  # war-room set-up: the channel, its topic, invites, the briefing
    BACKGROUND = 3  # FYIs, thread lines, reminders, look-ups


class Origin(IntEnum):
    PERSON = 0
    ALERT = 1


@dataclass(frozen=True)
class Rate:
    per_minute: float
    burst: int


# Slack's own (bot.slack.tiers), mirrored a little under: the rate 1% under, the burst one token
# under. The one token is the margin for latency (the bot takes its token a moment before Slack
# counts the call, and calls do not all take equally long); the 1% keeps the bot's bucket behind
# Slack's over time. Any wider and a storm's announcements and war rooms land more than 10% after
# Slack's floor (bench/storm.py): 18 a minute for conversations.create had the 32nd war room at
# 93 s instead of 81.
RATE_MARGIN = 0.99


def _under(limit: tiers.Limit) -> Rate:
    return Rate(limit.per_minute * RATE_MARGIN, max(1, limit.burst - 1))


TIER_2 = _under(tiers.TIER_LIMITS[tiers.Tier.TIER_2])
TIER_3 = _under(tiers.TIER_LIMITS[tiers.Tier.TIER_3])
TIER_4 = _under(tiers.TIER_LIMITS[tiers.Tier.TIER_4])
POST_PER_CHANNEL = _under(tiers.POST_PER_CHANNEL)
POST_WORKSPACE = _under(tiers.POST_WORKSPACE)

_TIER_RATES: dict[tiers.Tier, Rate] = {
    tiers.Tier.TIER_2: TIER_2,
    tiers.Tier.TIER_3: TIER_3,
    tiers.Tier.TIER_4: TIER_4,
    tiers.Tier.POST: POST_WORKSPACE,  # and POST_PER_CHANNEL per channel
}
# What an alert's call leaves in every bucket it takes from: a person's call that comes meanwhile
# finds a token at once (their page or announcement goes the moment it is asked for, not at the
# next refill, a second later in a DM that alert pages keep busy). Alerts' rate is unchanged.
PEOPLES_RESERVE = 1.0
# Not paced: Slack calls their limits generous, and the bot calls them at start-up only.
_UNPACED = frozenset({"api.test", "auth.test"})
METHOD_RATES: dict[str, Rate] = {
    method: _TIER_RATES[tier] for method, tier in tiers.METHOD_TIERS.items() if method not in _UNPACED
}

_LANE: ContextVar[tuple[Lane, Origin]] = ContextVar("slack_lane", default=(Lane.PEOPLE, Origin.PERSON))
_MAX_WAIT: ContextVar[float | None] = ContextVar("slack_max_wait", default=None)


@contextmanager
def pace(lane: Lane, origin: Origin | None = None, *, max_wait_s: float | None = None) -> Iterator[None]:
    """Calls made within go in `lane` (keeping the origin already set, unless given); with
    `max_wait_s`, a call that would wait longer for its token raises `Saturated` instead."""
    current = _LANE.get()
    lane_token = _LANE.set((lane, current[1] if origin is None else origin))
    wait_token = _MAX_WAIT.set(max_wait_s) if max_wait_s is not None else None
    try:
        yield
    finally:
        _LANE.reset(lane_token)
        if wait_token is not None:
            _MAX_WAIT.reset(wait_token)


def current_lane() -> tuple[Lane, Origin]:
    return _LANE.get()


@dataclass(frozen=True)
class Waited:
    """A call that did not get its token at once: `seconds` waited, or told to wait (`Saturated`)."""

    method: str
    channel: str | None
    lane: Lane
    origin: Origin
    seconds: float


class Saturated(Exception):
    """No token for this call within the caller's `max_wait_s`: try again in `after` seconds."""

    def __init__(self, method: str, after: float) -> None:
        super().__init__(f"{method}: paced, next token in {after:.1f} s")
        self.method = method
        self.after = after


class _Bucket:
    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate.per_minute / 60.0
        self.capacity = float(rate.burst)
        self.tokens = self.capacity
        self.at = now
        self.blocked_until = 0.0
        self.waiting: list[tuple[int, int, int]] = []  # (lane, origin, seq): a heap
        self.merged_into: _Bucket | None = None  # one channel known by two names: see `absorb`

    def wait(self, now: float, need: float = 1.0) -> float:
        """Seconds until the bucket holds `need` tokens (0: it does now)."""
        if now < self.blocked_until:
            return self.blocked_until - now
        self._fill(now)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def _fill(self, now: float) -> None:
        if now > self.at:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def absorb(self, other: _Bucket, now: float) -> None:
        """`other` counted calls to the same channel under another name: Slack counted them all in
        one bucket, so this one carries both's spending from now on (and whoever waits on either)."""
        self._fill(now)
        other._fill(now)
        self.tokens = min(self.tokens, self.tokens + other.tokens - other.capacity)
        self.blocked_until = max(self.blocked_until, other.blocked_until)
        self.waiting.extend(other.waiting)
        heapq.heapify(self.waiting)
        other.waiting = []
        other.merged_into = self

    def live(self) -> _Bucket:
        bucket = self
        while bucket.merged_into is not None:
            bucket = bucket.merged_into
        return bucket


class Pacer:
    """Token buckets for the Web API, shared by every thread of the process."""

    def __init__(self, rates: dict[str, Rate] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rates = METHOD_RATES if rates is None else rates
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._aliases: dict[str, str] = {}  # a channel's name (as posted to) -> its ID
        self.waited_s = 0.0  # total time calls spent waiting for a token (for the benchmarks)
        # The latest calls that had to wait for a token or were held back (benchmarks, tests).
        self.waits: deque[Waited] = deque(maxlen=500)

    def acquire(self, method: str, channel: str | None = None) -> None:
        """Wait for this call's tokens, in lane order; `Saturated` past the caller's max wait."""
        rate = self.rates.get(method)
        if rate is None:
            return
        lane, origin = _LANE.get()
        max_wait = _MAX_WAIT.get()
        entry = (int(lane), int(origin), next(self._seq))
        need = 1.0 + (PEOPLES_RESERVE if origin == Origin.ALERT else 0.0)
        started = self.clock()
        with self._cond:
            # The narrowest bucket first (the channel's, then the method's): a call waiting for its
            # channel's token never holds up, in a wider bucket, calls to other channels.
            stages = list(reversed(self._buckets_for(method, channel, rate, started)))
            taken: list[_Bucket] = []
            held: float | None = None  # how long the call waited, or was told to (None: went at once)
            try:
                for stage in stages:
                    bucket = stage.live()
                    heapq.heappush(bucket.waiting, entry)
                    try:
                        while True:
                            now = self.clock()
                            bucket = bucket.live()  # a channel's two names merged meanwhile
                            first = bucket.waiting[0] == entry
                            wait = bucket.wait(now, need)
                            if first and wait <= 0:
                                bucket.tokens -= 1
                                taken.append(bucket)
                                break
                            if max_wait is not None and now - started + max(wait, 0.05) > max_wait:
                                held = max(wait, 0.05)
                                raise Saturated(method, held)
                            held = 0.0
                            self._cond.wait(timeout=max(0.01, wait) if first else 0.25)
                    finally:
                        bucket = bucket.live()
                        if entry in bucket.waiting:
                            bucket.waiting.remove(entry)
                            heapq.heapify(bucket.waiting)
                        self._cond.notify_all()
            except BaseException:
                for bucket in taken:  # a call that does not go gives back what it took
                    live = bucket.live()
                    live.tokens = min(live.capacity, live.tokens + 1)
                raise
            finally:
                waited = self.clock() - started
                self.waited_s += waited
                if held is not None:
                    where = self._aliases.get(channel, channel) if channel else None
                    self.waits.append(Waited(method, where, lane, origin, max(held, waited)))

    def wait_for(self, method: str, channel: str | None = None) -> float:
        """About how long a call to `method` made now would wait for its token (0: none), counting
        the calls already waiting ahead of it. Takes nothing."""
        rate = self.rates.get(method)
        if rate is None:
            return 0.0
        with self._cond:
            now = self.clock()
            longest = 0.0
            for bucket in self._buckets_for(method, channel, rate, now):
                wait = bucket.wait(now)
                if bucket.waiting:
                    wait += len(bucket.waiting) / bucket.rate
                longest = max(longest, wait)
            return longest

    def learn_channel(self, named: str | None, channel_id: str | None) -> None:
        """A post to `named` ("incident-response", "#x", a user ID) landed in `channel_id`: both
        are one channel to Slack's per-channel limit, so both share one bucket from now on."""
        if named and channel_id and named != channel_id:
            with self._cond:
                if self._aliases.get(named) == channel_id:
                    return
                self._aliases[named] = channel_id
                # Calls counted under the name so far count against the ID's bucket too: without
                # this, the posts made by name and those made by ID each had a whole burst.
                for method, channel in list(self._buckets):
                    if channel != named:
                        continue
                    by_name = self._buckets.pop((method, named))
                    by_id = self._buckets.get((method, channel_id))
                    if by_id is None:
                        self._buckets[(method, channel_id)] = by_name
                    elif by_id is not by_name:
                        by_id.absorb(by_name, self.clock())
                self._cond.notify_all()

    def rate_limited(self, method: str, channel: str | None, retry_after: float) -> None:
        """Slack answered 429 anyway: nobody calls `method` (there) until `retry_after` is over."""
        rate = self.rates.get(method)
        if rate is None:
            return
        with self._cond:
            now = self.clock()
            for bucket in self._buckets_for(method, channel, rate, now):
                bucket.blocked_until = max(bucket.blocked_until, now + retry_after)
                bucket.tokens = 0.0
                bucket.at = now + retry_after
            self._cond.notify_all()

    def _buckets_for(self, method: str, channel: str | None, rate: Rate, now: float) -> list[_Bucket]:
        keys = [((method, ""), rate)]
        if method == "chat.postMessage" and channel:
            keys.append(((method, self._aliases.get(channel, channel)), POST_PER_CHANNEL))
        buckets = []
        for key, key_rate in keys:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(key_rate, now)
            buckets.append(bucket)
        return buckets


def call_channel(kwargs: dict[str, Any]) -> str | None:
    """The channel a Web API call names (in its JSON body, form or query), if any."""
    for part in ("json", "data", "params"):
        values = kwargs.get(part)
        if isinstance(values, dict) and values.get("channel"):
            return str(values["channel"])
    return None
