"""/incident update — a status update: war room, announcement thread, announcement, timeline."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from bot.context import ButtonClick, CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core.errors import UsageError
from bot.core.text import for_slack, length, plain
from bot.domain.escalation import Delivery, Firing
from bot.domain.incidents import STATUSES, Incident, post_update, snooze
from bot.incident import followups
from bot.slack import ids
from bot.slack.blocks import incident as blocks
from bot.slack.forms import open_form_now
from bot.slack.grammar import public_flag
from bot.statuspage.client import GENERIC_BODY

USAGE = "/incident update [INC-n] [--public] [investigating|identified|monitoring] <what we know>"
SUMMARY = "post a status update (resets the reminder clock)"
NEEDS_INCIDENT = True
UPDATE_MAX = 2900
MESSAGE_MAX = 20_000  # mrkdwn of an update at its limit: escapes and mentions are longer than typed


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    public, args = public_flag("update", req.args)
    if public and not ctx.pager.statuspage:
        raise UsageError("No status page is configured (see `statuspage` in the config).", USAGE)
    first, _, rest = args.partition(" ")
    status = first.lower() if first.lower() in STATUSES and first.lower() != "resolved" else None
    text = (rest if status else args).strip()
    if not text:
        if req.trigger_id:
            return _open_form(ctx, incident, req.trigger_id)
        raise UsageError("What is the update?", USAGE)
    return publish(ctx, incident, req.user, text, status, public=public)


def publish(ctx: Context, incident: Incident, user: str, text: str, status: str | None, public: bool = False) -> Reply:
    if length(text) > UPDATE_MAX:
        raise UsageError(f"Updates are limited to {UPDATE_MAX:,} characters; yours has {length(text):,}.", USAGE)
    now = ctx.now()

    def message(new: Incident) -> str:
        return f"*{new.ref} update* ({new.status}) from <@{user}>:\n{for_slack(text, MESSAGE_MAX)}"

    said = ctx.store.firing_writer(lambda new: [followups.said(new, message(new))], now)
    _, saved = ctx.store.change(
        incident, lambda current: post_update(current, text=text, status=status, by=user, now=now), now, also=said
    )
    ctx.timers.replan(saved.number)
    if public:
        to_status_page(ctx, saved, "update", status=saved.status, body=text)
    ctx.timers.wake_deliveries()
    where = " and the status page" if public else ""
    return Reply(f"Update posted to {saved.ref}{where}.")


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is already resolved.")
    if not click.trigger_id:
        raise UsageError(f"Type `/incident update {incident.ref} <text>` instead.")
    return _open_form(ctx, incident, click.trigger_id)


def _open_form(ctx: Context, incident: Incident, trigger_id: str) -> Reply:
    """The update form (status choice, and the status-page tick when one is configured)."""
    view = blocks.update_modal(incident, statuspage=ctx.pager.statuspage is not None)
    open_form_now(ctx, trigger_id, view, USAGE)
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
    return publish(ctx, incident, submission.user, text, status if status in STATUSES else None, public=public)


def to_status_page(ctx: Context, incident: Incident, action: str, *, status: str | None = None, body: str = "") -> None:
    """Queue a status page change; it is sent (and retried) like a page, never blocking Slack.

    `body` is user text in the canonical form; the status page gets it as plain text.
    """
    if ctx.pager.statuspage is None:
        return
    fired = ctx.store.fired_keys(incident.number)
    if action == "resolve" and "statuspage:create" not in fired:
        return  # never made public: nothing to resolve there
    if action == "update" and "statuspage:create" not in fired:
        # A lower severity made public by hand: open it there first (in general words: the
        # update was asked to go public, the title was not), then update it.
        to_status_page(ctx, incident, "create", body=GENERIC_BODY)
    ctx.store.record_firing(incident.number, status_page_firing(action, status=status, body=plain(body)), ctx.now())
    ctx.timers.wake_deliveries()


def status_page_firing(action: str, *, status: str | None = None, body: str = "", name: str | None = None) -> Firing:
    """A status page create/update/resolve as a delivery: sent and retried like a page.

    `name` is the public incident's name on create; without one the page shows a general name.
    """
    key = "statuspage:create" if action == "create" else f"statuspage:{action}:{uuid.uuid4().hex[:12]}"
    detail = {"status": status, "body": body, **({"name": name} if name else {})}
    return Firing(key, (Delivery("statuspage", action, json.dumps(detail)),))


def on_snooze(ctx: Context, click: ButtonClick) -> Reply:
    """A reminder's Snooze button: no reminders until then; the next update ends the snooze."""
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is resolved; there is nothing to snooze.")
    minutes = int(click.value.partition(":")[2] or 30)
    now = ctx.now()
    until = now + timedelta(minutes=min(max(minutes, 1), 240))
    _, saved = ctx.store.change(incident, lambda current: snooze(current, until=until, by=click.user), now)
    ctx.timers.replan(saved.number)

    def show() -> Reply | None:
        ctx.pager.mark_reminder_snoozed(saved, click.user)
        return None

    return Reply(f"Update reminders for {saved.ref} snoozed until {until:%H:%M} UTC.", after=show)


ACTIONS = {ids.POST_UPDATE: on_click, ids.SNOOZE_30M: on_snooze, ids.SNOOZE_1H: on_snooze}
VIEWS = {ids.UPDATE_MODAL: on_submit}
