"""/incident declare — open an incident: number, announcement, war room, first steps."""

from __future__ import annotations

import logging
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot import blocks, ids
from bot.announcements import AnnouncementChannelError
from bot.context import CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.errors import UsageError
from bot.incidents import Incident, declare, parse_severity, validate_title
from bot.slack import error_code
from commands.update import open_form_now, status_page_firing

USAGE = "/incident declare <p1|p2|p3|p4> <title>"
PAGE_AT_THE_LATEST = timedelta(seconds=10)
SUMMARY = "open an incident (no title opens a form)"

log = logging.getLogger(__name__)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    severity_token, _, title_text = req.args.partition(" ")
    if not severity_token:
        if req.trigger_id:
            return _open_form(ctx, req, severity=None)
        raise UsageError("Which severity, and what is happening?", USAGE)
    severity = parse_severity(severity_token, USAGE)
    if not title_text.strip():
        if req.trigger_id:
            return _open_form(ctx, req, severity=severity)
        raise UsageError("The incident needs a title.", USAGE)
    title = validate_title(title_text, USAGE)
    incident = _create(ctx, title=title, severity=severity, user=req.user)
    return Reply(
        f"{incident.ref} declared ({blocks.severity_label(ctx.config, severity)}). "
        f"Announcing it in #{ctx.config.channel}…",
        after=lambda: set_up(ctx, incident),
    )


def _open_form(ctx: Context, req: CommandRequest, severity: str | None) -> Reply:
    assert req.trigger_id
    view = blocks.declare_modal(ctx.config, severity=severity, channel=req.channel)
    open_form_now(ctx, req.trigger_id, view, USAGE)
    return Reply("")


def _create(ctx: Context, *, title: str, severity: str, user: str) -> Incident:
    now = ctx.now()
    draft = declare(title=title, severity=severity, by=user, now=now, channel=ctx.config.channel)
    statuspage = ctx.config.statuspage
    public = ctx.pager.statuspage is not None and statuspage is not None and severity in statuspage.severities
    firings = (status_page_firing("create", body=f"We are investigating: {title}"),) if public else ()
    incident = ctx.store.create_incident(draft, now, firings)
    # Paging starts once set-up has made the war room (so the page can link it), but never
    # later than this, however slow or broken Slack is being.
    ctx.timers.tick_at(incident.number, now + PAGE_AT_THE_LATEST)
    if public:
        ctx.timers.wake_deliveries()
    return incident


def set_up(ctx: Context, incident: Incident) -> Reply | None:
    """After the ack: announcement, war room, first steps, then paging.

    Safe to re-run; the store says what is done. Paging starts once the war room exists, so the
    page can link to it, and starts even when Slack refused part of the set-up.
    """
    try:
        incident = ctx.announcer.setup(incident.number)
    except AnnouncementChannelError as exc:
        return Reply(f"{incident.ref} is recorded, but {exc}")
    except SlackApiError as exc:
        log.warning("setting up %s failed: %s", incident.ref, error_code(exc))
        return Reply(
            f"{incident.ref} is recorded, but Slack refused part of its set-up (`{error_code(exc)}`). "
            "It will be retried; `/incident list` shows it meanwhile."
        )
    finally:
        ctx.timers.replan(incident.number)
    room = f" War room: <#{incident.war_room_id}>." if incident.war_room_id else ""
    return Reply(f"{incident.ref} is announced in <#{incident.announcement_channel}>.{room}")


def on_submit(ctx: Context, submission: ViewSubmission) -> Reply:
    severity_value = submission.values.get(ids.SEVERITY_BLOCK)
    title_value = submission.values.get(ids.TITLE_BLOCK) or ""
    errors: dict[str, str] = {}
    severity = title = None
    try:
        severity = parse_severity(severity_value, USAGE)
    except UsageError as exc:
        errors[ids.SEVERITY_BLOCK] = exc.message
    try:
        title = validate_title(title_value, USAGE)
    except UsageError as exc:
        errors[ids.TITLE_BLOCK] = exc.message
    if errors:
        raise ViewErrors(errors)
    assert severity and title
    incident = _create(ctx, title=title, severity=severity, user=submission.user)
    return Reply("", after=lambda: set_up(ctx, incident))


VIEWS = {ids.DECLARE_MODAL: on_submit}
