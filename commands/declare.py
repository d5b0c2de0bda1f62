"""/incident declare — open an incident: number, announcement, war room, first steps."""

from __future__ import annotations

import logging

from bot.context import CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core.errors import UsageError
from bot.domain.incidents import parse_severity, validate_title
from bot.incident.opening import create, set_up
from bot.slack import ids
from bot.slack.blocks import incident as blocks
from bot.slack.forms import open_form_now
from bot.slack.grammar import public_flag

USAGE = "/incident declare <p1|p2|p3|p4> [--public] <title>"
SUMMARY = "open an incident (no title opens a form)"

log = logging.getLogger(__name__)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    public, args = public_flag("declare", req.args)
    if public and ctx.statuspage is None:
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
        ctx.config, severity=severity, channel=req.channel, statuspage=ctx.statuspage is not None
    )
    open_form_now(ctx.slack, req.trigger_id, view, USAGE)
    return Reply("")


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
