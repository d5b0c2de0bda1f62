"""/incident ack — acknowledge an incident, which stops its escalation."""

from __future__ import annotations

from bot import ids
from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.errors import UsageError
from bot.incidents import Incident, acknowledge

USAGE = "/incident ack [INC-n]"
SUMMARY = "acknowledge: you are on it, escalation stops"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    return _acknowledge(ctx, req.open_incident_or_raise(), req.user)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _acknowledge(ctx, click.incident_or_raise(), click.user)


def _acknowledge(ctx: Context, incident: Incident, user: str) -> Reply:
    now = ctx.now()
    while True:
        if not incident.is_open:
            raise UsageError(f"{incident.ref} is already resolved.")
        change = acknowledge(incident, by=user, now=now)
        if change is None:
            who = f"<@{incident.acknowledged_by}>" if incident.acknowledged_by != user else "you"
            return Reply(f"{incident.ref} was already acknowledged by {who}. Nothing to do.")
        saved = ctx.store.apply(change, now, old=incident)
        if saved is not None:
            break
        # Someone else changed it meanwhile (a double click, a second person): decide again.
        incident = ctx.store.get(incident.number) or incident
    ctx.timers.replan(saved.number)

    def announce() -> Reply | None:
        ctx.announcer.refresh(saved.number)
        ctx.announcer.everywhere(saved, f"✅ <@{user}> acknowledged {saved.ref}. Escalation stopped.")
        ctx.pager.close_pages(saved)
        return None

    return Reply(f"You acknowledged {saved.ref}. Escalation stopped.", after=announce)


ACTIONS = {ids.ACK: on_click}
