"""/incident update — a status update: war room, announcement thread, announcement, timeline."""

from __future__ import annotations

from datetime import timedelta

from bot.context import ButtonClick, CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core.errors import UsageError
from bot.domain.incidents import STATUSES, Incident, snooze
from bot.incident.updates import publish
from bot.paging.pager import mark_reminder_snoozed
from bot.slack import ids
from bot.slack.blocks import incident as blocks
from bot.slack.forms import open_form_now
from bot.slack.grammar import public_flag

USAGE = "/incident update [INC-n] [--public] [investigating|identified|monitoring] <what we know>"
SUMMARY = "post a status update (resets the reminder clock)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    public, args = public_flag("update", req.args)
    if public and not ctx.statuspage:
        raise UsageError("No status page is configured (see `statuspage` in the config).", USAGE)
    first, _, rest = args.partition(" ")
    status = first.lower() if first.lower() in STATUSES and first.lower() != "resolved" else None
    text = (rest if status else args).strip()
    if not text:
        if req.trigger_id:
            return _open_form(ctx, incident, req.trigger_id)
        raise UsageError("What is the update?", USAGE)
    return publish(ctx, incident, req.user, text, status, public=public, usage=USAGE)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is already resolved.")
    if not click.trigger_id:
        raise UsageError(f"Type `/incident update {incident.ref} <text>` instead.")
    return _open_form(ctx, incident, click.trigger_id)


def _open_form(ctx: Context, incident: Incident, trigger_id: str) -> Reply:
    """The update form (status choice, and the status-page tick when one is configured)."""
    view = blocks.update_modal(incident, statuspage=ctx.statuspage is not None)
    open_form_now(ctx.slack, trigger_id, view, USAGE)
    return Reply("")


def on_submit(ctx: Context, submission: ViewSubmission) -> Reply:
    text = (submission.values.get(ids.UPDATE_TEXT_BLOCK) or "").strip()
    status = submission.values.get(ids.STATUS_BLOCK)
    public = bool(submission.values.get(ids.PUBLIC_BLOCK))
    if not text:
        raise ViewErrors({ids.UPDATE_TEXT_BLOCK: "What is the update?"})
    incident = ctx.store.get(int(submission.metadata.get("incident", 0)))
    if incident is None or not incident.is_open:
        raise ViewErrors({ids.UPDATE_TEXT_BLOCK: "That incident is no longer open."})
    status = status if status in STATUSES else None
    return publish(ctx, incident, submission.user, text, status, public=public, usage=USAGE)


SNOOZE_MINUTES = {ids.SNOOZE_30M: 30, ids.SNOOZE_1H: 60}


def on_snooze(ctx: Context, click: ButtonClick) -> Reply:
    """A reminder's Snooze button: no reminders until then; the next update ends the snooze."""
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is resolved; there is nothing to snooze.")
    # The button says how long, not its value: a value is only echoed back and may be forged.
    minutes = SNOOZE_MINUTES.get(click.action_id, 30)
    now = ctx.now()
    until = now + timedelta(minutes=minutes)
    _, saved = ctx.store.change(incident, lambda current: snooze(current, until=until, by=click.user), now)
    ctx.timers.replan(saved.number)

    def show() -> Reply | None:
        mark_reminder_snoozed(ctx.store, ctx.slack, saved, click.user)
        return None

    return Reply(f"Update reminders for {saved.ref} snoozed until {until:%H:%M} UTC.", after=show)


ACTIONS = {ids.POST_UPDATE: on_click, ids.SNOOZE_30M: on_snooze, ids.SNOOZE_1H: on_snooze}
VIEWS = {ids.UPDATE_MODAL: on_submit}
