"""/incident reopen — a resolved incident is back: open again, timers re-planned from now.

Also the **Reopen** button (`incident_reopen`) on the message an alert group firing again soon
after the resolution posts in the incident: the same reopen, gated as this verb.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.alerts import intake as alert_intake
from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.core.durations import humanize
from bot.core.errors import UsageError
from bot.core.steps import each
from bot.domain import pagerduty
from bot.domain.incidents import Incident, clean_title, reopen
from bot.domain.records import EventKind
from bot.slack import ids
from bot.slack.grammar import within_limit
from bot.store.sqlite import Tx

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
    saved, announce = reopen_incident(ctx, incident, req.user, reason or None)
    return Reply(f"{saved.ref} reopened.", after=announce)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    """The Reopen button of a re-fire message: its value is the incident's number, nothing else."""
    incident = click.incident
    if incident is None or click.value != str(incident.number):
        raise UsageError("That button does not name an incident this bot knows; nothing was changed.")
    if incident.is_open:
        by = next((e.actor for e in reversed(ctx.store.timeline(incident.number)) if e.kind == EventKind.REOPEN), None)
        who = f" by <@{by}>" if by else ""
        return Reply(f"{incident.ref} is already open again (reopened{who}); nothing was changed.")
    saved, announce = reopen_incident(ctx, incident, click.user, "its alert is firing again")
    return Reply(f"{saved.ref} reopened. Its paging and reminders start again from now.", after=announce)


def reopen_incident(
    ctx: Context, incident: Incident, user: str, reason: str | None
) -> tuple[Incident, Callable[[], Reply | None]]:
    """Reopen, with what it owes written in its own transaction: PagerDuty's trigger, and the
    incident's re-fires attached to it, their messages edited to say who reopened it."""
    now = ctx.now()
    owed = ctx.store.firing_writer(lambda new: pagerduty.on_reopen(ctx.paging_out, new), now)
    refires = ctx.store.refires_writer(now)

    def also(db: Tx, new: Incident) -> None:
        owed(db, new)
        refires(db, new)

    change, saved = ctx.store.change(
        incident, lambda current: reopen(current, by=user, now=now, reason=reason), now, also=also
    )
    assert change is not None  # reopen always decides a change, or refuses
    ctx.timers.replan(saved.number)
    ctx.timers.wake_deliveries()
    every = ctx.config.policy(saved.severity).update_every
    cadence = f" Next update due within {humanize(every)}." if every else ""
    message = f"🔁 {change.text}. The incident is open again and its timers run from now.{cadence}"

    def announce() -> Reply | None:
        each(
            lambda: ctx.announcer.refresh(saved.number),
            lambda: ctx.announcer.everywhere(saved, message),
            lambda: alert_intake.settle_linked(ctx, saved.number),  # the re-fires' lines, as attached
        )
        return None

    return saved, announce


ACTIONS = {ids.REOPEN: on_click}
