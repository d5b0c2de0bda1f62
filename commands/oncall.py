"""/incident oncall — who is on call now, and overrides: someone takes a schedule's shift for a while.

`/incident oncall` shows each schedule (who now, until when, who next, overrides in force),
each role's holders and each open incident's roles. `/incident oncall override <schedule>
<@user> <4h | until 18:00>` puts someone on call in place of the rotation; `/incident oncall
override clear <schedule>` ends that early. Overrides are stored, audited and announced in the
announcement channel.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import CommandRequest, Context, Reply
from bot.core.durations import parse_duration
from bot.core.errors import UsageError
from bot.core.mrkdwn import escape
from bot.domain import schedules
from bot.domain.policy import Config
from bot.domain.schedules import Schedule
from bot.oncall.directory import PeopleError, mentioned_user
from bot.oncall.roster import roster_text
from bot.slack.gateway import error_code

log = logging.getLogger(__name__)

USAGE = "/incident oncall [override <schedule> <@user> <4h|until HH:MM> | override clear <schedule>]"
SUMMARY = "who is on call now; take or clear a schedule's shift with an override"
OVERRIDE_USAGE = "/incident oncall override <schedule> <@user> <4h|until HH:MM>  or  override clear <schedule>"
LONGEST_OVERRIDE = timedelta(days=14)  # longer than any sane swap: more likely a typo (4d for 4h)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    words = req.args.split()
    if not words:
        # Emails and user groups are looked up in Slack, which may take a moment: answer after the ack.
        return Reply("", after=lambda: Reply(roster(ctx, ctx.now())))
    if words[0].lower() != "override":
        shown = words[0][:30].replace("`", "'")
        raise UsageError(f"`{shown}` is not something `oncall` does.", USAGE)
    if len(words) >= 2 and words[1].lower() == "clear":
        if len(words) != 3:
            raise UsageError("Clear which schedule's override?", OVERRIDE_USAGE + _schedules(ctx.config))
        schedule = _schedule(ctx.config, words[2])
        return Reply("", after=lambda: _clear(ctx, req, schedule))
    if len(words) < 4:
        raise UsageError("Name a schedule, a person and how long.", OVERRIDE_USAGE + _schedules(ctx.config))
    schedule = _schedule(ctx.config, words[1])
    user = mentioned_user(words[2])
    if user is None:
        raise UsageError("Name the person with an @-mention (`@sam`).", OVERRIDE_USAGE)
    now = ctx.now()
    try:
        ends_at = schedules.override_end(" ".join(words[3:]), schedule, now, parse_duration)
    except ValueError as exc:
        shown = " ".join(words[3:])[:30].replace("`", "'")
        raise UsageError(f"`{shown}` is not a length (`4h`) or an end time (`until 18:00`).", OVERRIDE_USAGE) from exc
    if ends_at <= now:
        raise UsageError("An override must last a while: try `4h` or `until 18:00`.", OVERRIDE_USAGE)
    if ends_at - now > LONGEST_OVERRIDE:
        raise UsageError("Overrides last at most 14 days; change the rotation for longer.", OVERRIDE_USAGE)
    return Reply("", after=lambda: _override(ctx, req, schedule, user, ends_at))


def _schedule(config: Config, name: str) -> Schedule:
    if name in config.schedules:
        return config.schedules[name]
    shown = name[:40].replace("`", "'")
    raise UsageError(f"There is no schedule `{shown}`.", OVERRIDE_USAGE + _schedules(config))


def _schedules(config: Config) -> str:
    return f"\nSchedules: {', '.join(config.schedules) or 'none configured (see `schedules` in the config)'}."


def _override(ctx: Context, req: CommandRequest, schedule: Schedule, user: str, ends_at: datetime) -> Reply:
    now = ctx.now()
    if not schedule.allow_outside_overrides and user not in ctx.directory.schedule_members(schedule.name):
        # The holder becomes an on-call role holder: a responder everywhere, maybe a roller-back.
        log.info("refused an override of %s to %s, who is not in the rotation", schedule.name, user)
        return Reply(
            f"<@{user}> is not a member of the *{schedule.name}* rotation, so they cannot take its shift. "
            f"Nothing was changed. (Add them to `schedules.{schedule.name}.members`, or set "
            "`allow_outside_overrides: true` on the schedule.)"
        )
    override, new = ctx.store.add_override(schedule.name, user, ends_at, by=req.user, now=now)
    until = schedules.when(override.ends_at, schedule, now)
    if not new:
        return Reply(f"<@{user}> is already on call for *{schedule.name}* until {until}.")
    after = schedules.on_call(schedule, (), override.ends_at)
    back = f"; then <@{after.user}>" if after and after.user.startswith(("U", "W")) else ""
    announced = _announce(
        ctx, f"🔁 <@{user}> is on call for *{schedule.name}* until {until}, set by <@{req.user}>{back}."
    )
    return Reply(f"✅ <@{user}> is on call for *{schedule.name}* until {until}.{announced}")


def _clear(ctx: Context, req: CommandRequest, schedule: Schedule) -> Reply:
    now = ctx.now()
    ended = ctx.store.clear_override(schedule.name, by=req.user, now=now)
    if not ended:
        return Reply(f"No override of *{schedule.name}* is in force.")
    current = ctx.directory.on_call(schedule.name, now)
    who = f"<@{current.user}>" if current and current.user.startswith(("U", "W")) else "the rotation"
    announced = _announce(ctx, f"🔁 <@{req.user}> ended the override of *{schedule.name}*: {who} is on call again.")
    return Reply(f"✅ Override of *{schedule.name}* ended: {who} is on call.{announced}")


def _announce(ctx: Context, text: str) -> str:
    """Post in the announcement channel; the override stands even if Slack refuses the post."""
    try:
        ctx.slack.post(ctx.config.channel, text)
    except SlackApiError as exc:
        log.warning("could not announce an on-call change in #%s: %s", ctx.config.channel, error_code(exc))
        return f" (I could not announce it in #{ctx.config.channel}: `{error_code(exc)}`.)"
    return ""


def roster(ctx: Context, now: datetime) -> str:
    def holders(role: str) -> str:
        try:
            return ", ".join(f"<@{u}>" for u in ctx.directory.users(role, now=now))
        except PeopleError as exc:
            return f"⚠️ {escape(str(exc))}"

    return roster_text(ctx.config, ctx.store, now, _mention, holders)


def _mention(ref: str) -> str:
    return f"<@{ref}>" if mentioned_user(ref) else escape(ref)
