"""Slack's rate limits, enforced: a token bucket per Web API method (by its published tier) and,
for chat.postMessage, one per channel as well, answered as Slack answers: HTTP 429,
`Retry-After` in whole seconds and `{"ok": false, "error": "ratelimited"}`, nothing carried out.

The tiers are Slack's ("Rate limits", docs.slack.dev/apis/web-api/rate-limits, and each method's
page): Tier 1 1+ a minute, Tier 2 20+, Tier 3 50+, Tier 4 100+; chat.postMessage is "special":
about one message a second per channel, short bursts allowed, with a workspace-wide limit
besides. Each bucket refills at the tier's rate and holds a short burst, so the sandbox is no
kinder than Slack: a client that calls at the documented rate is never refused, one that
bursts past it meets 429s. On by default; `SlackSandbox(rate_limits=False)` (or
`set_rate_limits(False)`) is for a test or a baseline that needs bursts beyond them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.core import SandboxCore
from bot.sandbox.slack.workspace import Call
from bot.slack import tiers


@dataclass(frozen=True)
class Tier:
    """A rate: `per_minute` calls a minute on average, `burst` of them at once."""

    name: str
    per_minute: float
    burst: int


TIER_1 = Tier("Tier 1", 1, 1)
TIER_2 = Tier("Tier 2", 20, 5)
TIER_3 = Tier("Tier 3", 50, 10)
TIER_4 = Tier("Tier 4", 100, 20)
# chat.postMessage: "one message per second per channel, short bursts >1 allowed", and a
# workspace-wide limit ("several hundred messages per minute").
POST_PER_CHANNEL = Tier("1 per second per channel", 60, 6)
POST_WORKSPACE = Tier("special (workspace-wide)", 300, 30)

# Slack's published rate for each tier; each method's tier is bot.slack.tiers'.
TIER_RATES: dict[tiers.Tier, Tier] = {
    tiers.Tier.TIER_1: TIER_1,
    tiers.Tier.TIER_2: TIER_2,
    tiers.Tier.TIER_3: TIER_3,
    tiers.Tier.TIER_4: TIER_4,
    tiers.Tier.POST: POST_WORKSPACE,  # and POST_PER_CHANNEL per channel
}
METHOD_TIERS: dict[str, Tier] = {method: TIER_RATES[tier] for method, tier in tiers.METHOD_TIERS.items()}


class _Bucket:
    def __init__(self, tier: Tier, now: float) -> None:
        self.rate = tier.per_minute / 60.0  # tokens a second
        self.capacity = float(tier.burst)
        self.tokens = self.capacity
        self.at = now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0: one is there now)."""
        self._fill(now)
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class RateLimits(SandboxCore):
    """The buckets, consulted by the server before a call is carried out."""

    rate_limits_on: bool
    _buckets: dict[tuple[str, str], _Bucket]

    def set_rate_limits(self, on: bool) -> None:
        """Enforce Slack's limits (the default) or answer every call however fast it comes."""
        with self._lock:
            self.rate_limits_on = on
            self._buckets = {}

    def rate_limited(self) -> list[Call]:
        """The calls the limits answered with 429 (not those a test injected)."""
        with self._lock:
            return [c for c in self.calls if c.status == 429 and not c.injected]

    def _limit(self, method: str, params: dict[str, Any]) -> int | None:
        """`Retry-After` for a call over its limits (it is not carried out), or None to go ahead.

        A call takes a token from every bucket it counts against only when all have one, as a
        refused call does not count against Slack's limits either.
        """
        tier = METHOD_TIERS.get(method)
        if tier is None:
            return None
        now = time.monotonic()
        with self._lock:
            if not self.rate_limits_on:
                return None
            buckets = [self._bucket((method, ""), tier, now)]
            if method == "chat.postMessage":
                buckets.append(self._bucket((method, self._channel_key(params.get("channel"))), POST_PER_CHANNEL, now))
            wait = max(bucket.wait(now) for bucket in buckets)
            if wait > 0:
                return max(1, math.ceil(wait))
            for bucket in buckets:
                bucket.take()
            return None

    def _bucket(self, key: tuple[str, str], tier: Tier, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tier, now)
        return bucket

    def _channel_key(self, channel: Any) -> str:
        """The conversation a post goes to, however it is named (ID, "#name", name, user ID)."""
        ref = str(channel or "").strip()
        if ref in self._users:
            for conv in self._conversations.values():
                if conv.is_im and ref in conv.members:
                    return conv.id
            return f"im:{ref}"
        found = self._by_name(ref.lstrip("#")) if ref not in self._conversations else None
        return found.id if found is not None else ref
