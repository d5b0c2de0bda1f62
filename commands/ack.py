"""/incident ack — acknowledge an incident, which stops its escalation."""

from __future__ import annotations

from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.domain import pagerduty
from bot.domain.deliveries import said
from bot.domain.incidents import Incident, acknowledge
from bot.slack import ids

USAGE = "/incident ack [INC-n]"
SUMMARY = "acknowledge: you are on it, escalation stops"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    return _acknowledge(ctx, req.open_incident_or_raise(), req.user)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _acknowledge(ctx, click.incident_or_raise(), click.user)


def _acknowledge(ctx: Context, incident: Incident, user: str) -> Reply:
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is already resolved.")
    now = ctx.now()
    line = f"✅ <@{user}> acknowledged {incident.ref}. Escalation stopped."
    # The pages' buttons, the announcement and the lines in Slack are owed with the ack itself.
    owed = ctx.store.firing_writer(
        lambda new: [said(new, line, close_pages=True), *pagerduty.on_acknowledge(ctx.paging_out, new)], now
    )
    change, saved = ctx.store.change(incident, lambda current: acknowledge(current, by=user, now=now), now, also=owed)
    if change is None:
        who = pagerduty.person(saved.acknowledged_by or "") if saved.acknowledged_by != user else "you"
        return Reply(f"{saved.ref} was already acknowledged by {who}. Nothing to do.")
    ctx.timers.replan(saved.number)
    ctx.timers.wake_deliveries()
    return Reply(f"You acknowledged {saved.ref}. Escalation stopped.")


ACTIONS = {ids.ACK: on_click}
