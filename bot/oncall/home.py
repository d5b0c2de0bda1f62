"""The App Home tab: published (`views.publish`) to a person when they open it (`app_home_opened`).

Their shifts now and next per schedule (overrides included), the open incidents in which they
hold a role, and the pages to them Slack took that nobody has acknowledged yet, each with the
Acknowledge button (`incident_ack`, the page's own). It is refreshed each time it is opened and
after an Acknowledge pressed on it; nothing is published to someone who never opened it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import Context
from bot.domain.coverage import shifts_of
from bot.domain.incidents import Incident
from bot.oncall.directory import PeopleError
from bot.slack.blocks import home as blocks
from bot.slack.gateway import error_code

log = logging.getLogger(__name__)

SHIFTS_AHEAD = timedelta(days=14)


def view(ctx: Context, user: str, note: str | None = None) -> dict[str, Any]:
    now = ctx.now()

    def is_me(member: str) -> bool:
        if member == user:
            return True
        if "@" not in member:
            return False
        try:
            return user in ctx.directory.users(member)
        except (PeopleError, SlackApiError):
            return False

    shifts = [
        blocks.ScheduleShifts(
            schedule.name,
            schedule.timezone,
            shifts_of(schedule, ctx.store.overrides(schedule.name, ending_after=now), is_me, now, now + SHIFTS_AHEAD),
        )
        for schedule in ctx.config.schedules.values()
        if any(is_me(m) for m in schedule.members) or ctx.store.overrides(schedule.name, ending_after=now)
    ]
    mine = [(i, roles) for i in ctx.store.open_incidents() if (roles := _roles(i, user))]
    pages: dict[int, blocks.WaitingPage] = {}
    for number, paged_at in ctx.store.pages_waiting(user):
        incident = ctx.store.get(number)
        if incident is not None and number not in pages:
            pages[number] = blocks.WaitingPage(incident, paged_at)
    return blocks.home_view(ctx.config, user, shifts, mine, list(pages.values()), now, note)


def publish(ctx: Context, user: str, note: str | None = None) -> None:
    ctx.slack.publish_home(user, view(ctx, user, note))


def on_app_home_opened(ctx: Context, event: dict[str, Any]) -> None:
    """The Home tab was opened (the Messages and About tabs send the same event, with their tab)."""
    user = str(event.get("user") or "")
    if event.get("tab") != "home" or not user:
        return
    try:
        publish(ctx, user)
    except SlackApiError as exc:
        log.warning("could not publish the Home tab of %s: %s", user, error_code(exc))


def _roles(incident: Incident, user: str) -> list[str]:
    roles = [role for role in ("commander", "scribe", "comms") if incident.role_holder(role) == user]
    if incident.declared_by == user and "commander" not in roles:
        roles.append("declarer")
    return roles
