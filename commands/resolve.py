"""/incident resolve — the all-clear: resolve, stop the timers, start the post-mortem.

`/incident resolve [summary]` resolves at once; the announcement's Resolve button opens a form
for the summary, root cause, customer impact and (when configured) the status page. Either way
the war room and the announcement thread get the runbook's all-clear, and for the post-mortem
severities the draft is uploaded and the post-mortem reminder planned.
"""

from __future__ import annotations

from bot.context import ButtonClick, CommandRequest, Context, Reply, ViewErrors, ViewSubmission
from bot.core.errors import UsageError
from bot.core.text import length
from bot.domain import pagerduty
from bot.domain.deliveries import Delivery, DeliveryKind, Firing, said
from bot.domain.escalation import postmortem_draft_key
from bot.domain.incidents import Incident, clean_title, resolve
from bot.domain.postmortem import started_at
from bot.domain.records import Resolution
from bot.incident.publishing import to_status_page
from bot.slack import ids
from bot.slack.blocks import review as review_blocks
from bot.slack.forms import open_form_now
from bot.slack.grammar import public_flag
from bot.statuspage.client import GENERIC_BODY, GENERIC_RESOLVED

USAGE = "/incident resolve [INC-n] [--public] [summary]"
SUMMARY = "resolve: all-clear, timers stop (the Resolve button opens a form)"
NEEDS_INCIDENT = True
SUMMARY_MAX = 2000


def handle(ctx: Context, req: CommandRequest) -> Reply:
    summary = req.args.strip()
    # The summary is written for the team; it goes on the status page only when asked for.
    public, summary = public_flag("resolve", summary)
    if public and ctx.statuspage is None:
        raise UsageError("No status page is configured (see `statuspage` in the config).", USAGE)
    if length(summary) > SUMMARY_MAX:
        raise UsageError(
            f"Summaries are limited to {SUMMARY_MAX:,} characters; yours has {length(summary):,}.",
            USAGE,
        )
    return _resolve(ctx, req.incident_or_raise(), req.user, Resolution(req.user, summary or None), public=public)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    """The Resolve button: the form, so the all-clear and the post-mortem get the facts."""
    incident = click.incident_or_raise()
    if not incident.is_open:
        return Reply(f"{incident.ref} is already resolved.")
    if not click.trigger_id:
        raise UsageError(f"Type `/incident resolve {incident.ref} &lt;summary&gt;` instead.")
    # The tick starts empty even for a public incident: the summary goes public only when asked.
    view = review_blocks.resolve_modal(incident, statuspage=ctx.statuspage is not None, channel=click.channel)
    open_form_now(ctx.slack, click.trigger_id, view, USAGE)
    return Reply("")


def on_submit(ctx: Context, submission: ViewSubmission) -> Reply:
    values = submission.values
    summary = (values.get(ids.RESOLVE_SUMMARY_BLOCK) or "").strip()
    root_cause = (values.get(ids.ROOT_CAUSE_BLOCK) or "").strip()
    impact = (values.get(ids.IMPACT_BLOCK) or "").strip()
    errors = {}
    if not summary:
        errors[ids.RESOLVE_SUMMARY_BLOCK] = "Say in a sentence what happened and what fixed it."
    for block, text in (
        (ids.RESOLVE_SUMMARY_BLOCK, summary),
        (ids.ROOT_CAUSE_BLOCK, root_cause),
        (ids.IMPACT_BLOCK, impact),
    ):
        if len(text) > review_blocks.FORM_TEXT_MAX:
            errors[block] = f"At most {review_blocks.FORM_TEXT_MAX:,} characters, please."
    if errors:
        raise ViewErrors(errors)
    incident = ctx.store.get(int(submission.metadata.get("incident", 0)))
    if incident is None:
        raise ViewErrors({ids.RESOLVE_SUMMARY_BLOCK: "That incident no longer exists."})
    public = ctx.statuspage is not None and bool(values.get(ids.RESOLVE_PUBLIC_BLOCK))
    details = Resolution(submission.user, summary, root_cause or None, impact or None)
    return _resolve(ctx, incident, submission.user, details, public=public)


def _resolve(ctx: Context, incident: Incident, user: str, details: Resolution, *, public: bool) -> Reply:
    """Resolve and say so. `public`: `--public` or the form's status-page tick; without it the
    status page (if the incident is on it) is resolved in general words, never with the summary."""
    now = ctx.now()
    summary = details.summary
    cleaned = clean_title(summary) if summary else None
    draft = incident.severity in ctx.config.postmortem_severities

    events = ctx.store.timeline(incident.number)

    def firings(new: Incident) -> tuple[Firing, ...]:
        # The all-clear, the pages closed and the announcement edited are owed with the resolve.
        text, blocks = review_blocks.all_clear(
            ctx.config,
            new,
            started=started_at(new, events),
            summary=summary,
            customer_impact=details.customer_impact,
        )
        all_clear = said(new, text, blocks, close_pages=False)
        owed = (all_clear, *pagerduty.on_resolve(ctx.paging_out, new))
        if not draft:
            return owed
        return (
            *owed,
            Firing(postmortem_draft_key(new), (Delivery(DeliveryKind.POSTMORTEM_DRAFT, "incident", "resolved"),)),
        )

    change, saved = ctx.store.resolve(
        incident, lambda current: resolve(current, by=user, now=now, summary=cleaned), now, details, firings
    )
    if change is None:
        return Reply(f"{saved.ref} is already resolved.")
    ctx.timers.replan(saved.number)
    _status_page(ctx, saved, summary, public)
    ctx.timers.wake_deliveries()
    return Reply(f"{saved.ref} resolved.")


def _status_page(ctx: Context, incident: Incident, summary: str | None, public: bool) -> None:
    if ctx.statuspage is None:
        return
    if public and "statuspage:create" not in ctx.store.fired_keys(incident.number):
        # Asked to go public for an incident never made public: say there, in general words, that it happened.
        to_status_page(ctx, incident, "create", body=GENERIC_BODY)
    to_status_page(ctx, incident, "resolve", body=summary if public and summary else GENERIC_RESOLVED)


ACTIONS = {ids.RESOLVE: on_click}
VIEWS = {ids.RESOLVE_MODAL: on_submit}
