"""Slack's rate-limit tier of each Web API method the bot calls, from the method's page in
Slack's reference (docs.slack.dev/apis/web-api/rate-limits). Written once: the sandbox
enforces Slack's rate for each tier (bot/sandbox/slack/limits.py) and the bot paces itself a
little under it (bot/slack/pacing.py), so a method moved to another tier moves in both."""

from __future__ import annotations

from enum import StrEnum


class Tier(StrEnum):
    TIER_1 = "Tier 1"
    TIER_2 = "Tier 2"
    TIER_3 = "Tier 3"
    TIER_4 = "Tier 4"
    # chat.postMessage: "special": about one message a second per channel, short bursts
    # allowed, and a workspace-wide limit besides.
    POST = "special (chat.postMessage)"


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
