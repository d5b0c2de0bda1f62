"""Slack's rate-limit tier of each Web API method the bot calls, from the method's page in
Slack's reference (docs.slack.dev/apis/web-api/rate-limits). Written once: the sandbox
enforces Slack's rate for each tier (bot/sandbox/slack/limits.py) and the bot paces itself a
little under it (bot/slack/pacing.py), so a method moved to another tier moves in both."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Tier(StrEnum):
    TIER_1 = "Tier 1"
    TIER_2 = "Tier 2"
    TIER_3 = "Tier 3"
    TIER_4 = "Tier 4"
    # chat.postMessage: "special": about one message a second per channel, short bursts
    # allowed, and a workspace-wide limit besides.
    POST = "special (chat.postMessage)"


@dataclass(frozen=True)
class Limit:
    """A rate: `per_minute` calls a minute on average, `burst` of them at once."""

    per_minute: float
    burst: int


# Slack's published rate of each tier. Slack publishes no burst size ("short bursts allowed"):
# these are the sandbox's, which it enforces, and the bot's pacer mirrors them a little under.
TIER_LIMITS: dict[Tier, Limit] = {
    Tier.TIER_1: Limit(1, 1),
    Tier.TIER_2: Limit(20, 5),
    Tier.TIER_3: Limit(50, 10),
    Tier.TIER_4: Limit(100, 20),
}
# chat.postMessage: "one message per second per channel, short bursts >1 allowed", and a
# workspace-wide limit ("several hundred messages per minute").
POST_PER_CHANNEL = Limit(60, 6)
POST_WORKSPACE = Limit(300, 30)

METHOD_TIERS: dict[str, Tier] = {
    "api.test": Tier.TIER_4,
    "auth.test": Tier.TIER_4,  # special: generous
    "chat.postMessage": Tier.POST,
    "chat.update": Tier.TIER_3,
    "chat.delete": Tier.TIER_3,
    "chat.postEphemeral": Tier.TIER_4,
    "chat.getPermalink": Tier.TIER_4,  # special: generous
    "conversations.create": Tier.TIER_2,
    "conversations.setTopic": Tier.TIER_2,
    "conversations.setPurpose": Tier.TIER_2,
    "conversations.invite": Tier.TIER_3,
    "conversations.join": Tier.TIER_3,
    "conversations.info": Tier.TIER_3,
    "conversations.open": Tier.TIER_3,
    "conversations.archive": Tier.TIER_2,
    "conversations.history": Tier.TIER_3,
    "conversations.replies": Tier.TIER_3,
    "conversations.members": Tier.TIER_4,
    "conversations.list": Tier.TIER_2,
    "users.info": Tier.TIER_4,
    "users.lookupByEmail": Tier.TIER_3,
    "usergroups.list": Tier.TIER_2,
    "usergroups.users.list": Tier.TIER_2,
    "views.open": Tier.TIER_4,
    "views.update": Tier.TIER_4,
    "views.push": Tier.TIER_4,
    "files.getUploadURLExternal": Tier.TIER_4,
    "files.completeUploadExternal": Tier.TIER_4,
    "files.info": Tier.TIER_4,
}
