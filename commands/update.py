"""/incident update — a status update: war room, announcement thread, announcement, timeline."""

from __future__ import annotations

from bot import blocks, ids
from bot.context import ButtonClick, CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.errors import UsageError
from bot.incidents import STATUSES, Incident, post_update
from bot.mrkdwn import user_text

USAGE = "/incident update [INC-n] [investigating|identified|monitoring] <what we know>"
SUMMARY = "post a status update (resets the reminder clock)"
NEEDS_INCIDENT = True
UPDATE_MAX = 2900


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    first, _, rest = req.args.partition(" ")
    status = first.lower() if first.lower() in STATUSES and first.lower() != "resolved" else None
    text = (rest if status else req.args).strip()
    if not text:
        if req.trigger_id:
            view = blocks.update_modal(incident)
            trigger_id = req.trigger_id
            return Reply("", after=lambda: ctx.slack.open_view(trigger_id, view))
        raise UsageError("What is the update?", USAGE)
    return publish(ctx, incident, req.user, text, status)


def publish(ctx: Context, incident: Incident, user: str, text: str, status: str | None) -> Reply:
    if len(text) > UPDATE_MAX:
        raise UsageError(f"Updates are limited to {UPDATE_MAX:,} characters; yours has {len(text):,}.", USAGE)
    now = ctx.now()
    while True:
        change = post_update(incident, text=text, status=status, by=user, now=now)
        saved = ctx.store.apply(change, now, old=incident)
        if saved is not None:
            break
        incident = ctx.store.get(incident.number) or incident
        if not incident.is_open:
            raise UsageError(f"{incident.ref} was resolved meanwhile.")
    ctx.timers.replan(saved.number)
    message = f"*{saved.ref} update* ({saved.status}) from <@{user}>:\n{user_text(text, 2900)}"

    def announce() -> Reply | None:
        ctx.announcer.refresh(saved.number)
        ctx.announcer.everywhere(saved, message)
        return None

    return Reply(f"Update posted to {saved.ref}.", after=announce)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is already resolved.")
    if not click.trigger_id:
        raise UsageError(f"Type `/incident update {incident.ref} <text>` instead.")
    view = blocks.update_modal(incident)
    trigger_id = click.trigger_id
    return Reply("", after=lambda: ctx.slack.open_view(trigger_id, view))


def on_submit(ctx: Context, submission: ViewSubmission) -> Reply:
    text = (submission.values.get(ids.UPDATE_TEXT_BLOCK) or "").strip()
    status = submission.values.get(ids.STATUS_BLOCK)
    if not text:
        raise ViewErrors({ids.UPDATE_TEXT_BLOCK: "What is the update?"})
    incident = ctx.store.get(int(submission.metadata.get("incident", 0)))
    if incident is None or not incident.is_open:
        raise ViewErrors({ids.UPDATE_TEXT_BLOCK: "That incident is no longer open."})
    return publish(ctx, incident, submission.user, text, status if status in STATUSES else None)


ACTIONS = {ids.POST_UPDATE: on_click}
VIEWS = {ids.UPDATE_MODAL: on_submit}
