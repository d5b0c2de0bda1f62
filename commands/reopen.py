"""/incident reopen — a resolved incident is back: open again, timers re-planned from now."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.core.durations import humanize
from bot.core.errors import UsageError
from bot.core.steps import each
from bot.domain import pagerduty
from bot.domain.incidents import clean_title, reopen
from bot.slack.grammar import within_limit

USAGE = "/incident reopen [INC-n] [reason]"
SUMMARY = "reopen a resolved incident; its timers start again"
NEEDS_INCIDENT = True
REASON_MAX = 500


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    reason = clean_title(req.args)
    within_limit(reason, REASON_MAX, "Reasons", USAGE)
    if incident.is_open:
        raise UsageError(f"{incident.ref} is still open; only a resolved incident can be reopened.", USAGE)
    now = ctx.now()
    owed = ctx.store.firing_writer(lambda new: pagerduty.on_reopen(ctx.paging_out, new), now)
    change, saved = ctx.store.change(
        incident, lambda current: reopen(current, by=req.user, now=now, reason=reason or None), now, also=owed
    )
    assert change is not None  # reopen always decides a change, or refuses
    ctx.timers.replan(saved.number)
    ctx.timers.wake_deliveries()
    every = ctx.config.policy(saved.severity).update_every
    cadence = f" Next update due within {humanize(every)}." if every else ""
    message = f"🔁 {change.text}. The incident is open again and its timers run from now.{cadence}"

    def announce() -> Reply | None:
        each(lambda: ctx.announcer.refresh(saved.number), lambda: ctx.announcer.everywhere(saved, message))
        return None

    return Reply(f"{saved.ref} reopened.", after=announce)
