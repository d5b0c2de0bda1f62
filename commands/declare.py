"""/incident declare — open an incident: number, announcement, war room, first steps."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core.errors import UsageError
from bot.core.text import plain
from bot.domain.incidents import Incident, declare, parse_severity, validate_title
from bot.incident.announcer import AnnouncementChannelError
from bot.slack import ids
from bot.slack.blocks import incident as blocks
from bot.slack.forms import open_form_now
from bot.slack.gateway import error_code
from bot.slack.grammar import public_flag
from bot.statuspage.client import GENERIC_BODY, GENERIC_NAME
from commands.update import status_page_firing

USAGE = "/incident declare <p1|p2|p3|p4> [--public] <title>"
PAGE_AT_THE_LATEST = timedelta(seconds=10)
SUMMARY = "open an incident (no title opens a form)"

log = logging.getLogger(__name__)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    public, args = public_flag("declare", req.args)
    if public and ctx.pager.statuspage is None:
        raise UsageError("No status page is configured (see `statuspage` in the config).", USAGE)
    severity_token, _, title_text = args.partition(" ")
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
    incident = create(ctx, title=title, severity=severity, user=req.user, public=public)
    return Reply(
        f"{incident.ref} declared ({blocks.severity_label(ctx.config, severity)}). "
        f"Announcing it in #{ctx.config.channel}…",
        after=lambda: set_up(ctx, incident),
    )


def _open_form(ctx: Context, req: CommandRequest, severity: str | None) -> Reply:
    assert req.trigger_id
    view = blocks.declare_modal(
        ctx.config, severity=severity, channel=req.channel, statuspage=ctx.pager.statuspage is not None
    )
    open_form_now(ctx, req.trigger_id, view, USAGE)
    return Reply("")


def create(
    ctx: Context,
    *,
    title: str,
    severity: str,
    user: str,
    detected_at: datetime | None = None,
    alerts: tuple[int, ...] = (),
    commander: str | None = None,
    public: bool = False,
) -> Incident:
    """Open an incident: the one way in, for the command, the form and alerts (`bot/alerts.py`).

    `alerts` are linked in the same transaction; if one already has an incident, `AlertTaken`
    is raised and nothing is stored. Call `set_up` after the ack. The status page opens by default
    (`statuspage.severities`) in general words, with the title only when asked (`--public`, the form's tick).
    """
    now = ctx.now()
    draft = declare(
        title=title,
        severity=severity,
        by=user,
        now=now,
        channel=ctx.config.channel,
        detected_at=detected_at,
        commander=commander,
    )
    statuspage = ctx.config.statuspage
    by_default = statuspage is not None and severity in statuspage.severities
    opens = ctx.pager.statuspage is not None and (public or by_default)
    if public:
        firing = status_page_firing("create", name=plain(title), body=f"We are investigating: {plain(title)}")
    else:
        firing = status_page_firing("create", name=GENERIC_NAME, body=GENERIC_BODY)
    firings = (firing,) if opens else ()
    incident = ctx.store.create_incident(draft, now, firings, alerts)
    # Paging starts once set-up has made the war room (so the page can link it), but never
    # later than this, however slow or broken Slack is being.
    ctx.timers.tick_at(incident.number, now + PAGE_AT_THE_LATEST)
    if opens:
        ctx.timers.wake_deliveries()
    return incident


def set_up(ctx: Context, incident: Incident) -> Reply | None:
    """After the ack: announcement, war room, first steps, then paging.

    Safe to re-run; the store says what is done. Paging starts once the war room exists, so the
    page can link to it, and starts even when Slack refused part of the set-up.
    """
    try:
        incident = ctx.announcer.setup(incident.number, pageable=lambda ready: ctx.timers.replan(ready.number))
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
    public = bool(submission.values.get(ids.PUBLIC_BLOCK))
    incident = create(ctx, title=title, severity=severity, user=submission.user, public=public)
    return Reply("", after=lambda: set_up(ctx, incident))


VIEWS = {ids.DECLARE_MODAL: on_submit}
