"""The catch-up, read from the store, and the greeting a person joining a war room gets.

`/incident catchup` and the greeting show the same text (`bot.domain.catchup`). A join
(`member_joined_channel`) in an incident's war room is greeted once per person per incident:
the greeting is claimed in the store first, so a retried event, a restart or a second instance
never greets twice; the bot's own join is not greeted, nor are the people the set-up briefed in
the room itself (it claims them, `Announcer`). A greeting Slack refused is released, so the
person's next join may be greeted.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.domain import catchup
from bot.domain.incidents import Incident
from bot.slack.gateway import error_code

log = logging.getLogger(__name__)


def facts(ctx: Context, incident: Incident) -> catchup.Facts:
    number = incident.number
    return catchup.Facts(
        incident=incident,
        events=ctx.store.timeline(number),
        followups=ctx.store.followups(number),
        proposals=ctx.store.incident_proposals(number),
        fired=ctx.store.fired_keys(number),
    )


def text(ctx: Context, incident: Incident) -> str:
    return catchup.text(ctx.config, facts(ctx, incident), ctx.now())


def on_member_joined(ctx: Context, event: dict[str, Any]) -> None:
    """Someone joined a channel: if it is an incident's war room, show them the catch-up once."""
    user = str(event.get("user") or "")
    channel = str(event.get("channel") or "")
    if not user or not channel:
        return
    incident = ctx.store.by_war_room(channel)
    if incident is None:
        return
    if user == ctx.slack.bot_user_id():
        return  # the bot joining the room it made
    if not ctx.store.claim_greeting(incident.number, user, ctx.now()):
        return
    greeting = f"👋 Welcome to the {incident.ref} war room. Here is the story so far (only you see this).\n"
    try:
        ctx.slack.post_ephemeral(channel, user, greeting + text(ctx, incident))
    except SlackApiError as exc:
        ctx.store.release_greeting(incident.number, user)
        log.warning("could not greet %s in %s: %s", user, incident.ref, error_code(exc))
    except Exception:
        ctx.store.release_greeting(incident.number, user)
        raise
