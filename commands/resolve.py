"""/incident resolve — mark an incident resolved and show it so on its announcement."""

from __future__ import annotations

from bot import ids
from bot.context import ButtonClick, CommandRequest, Context, Reply, each
from bot.incidents import Incident, clean_title, resolve
from bot.text import length
from commands.update import to_status_page

USAGE = "/incident resolve [INC-n] [summary]"
SUMMARY = "resolve: all-clear, timers stop"
NEEDS_INCIDENT = True
SUMMARY_MAX = 2000


def handle(ctx: Context, req: CommandRequest) -> Reply:
    summary = req.args.strip()
    if length(summary) > SUMMARY_MAX:
        from bot.errors import UsageError

        raise UsageError(
            f"Summaries are limited to {SUMMARY_MAX:,} characters; yours has {length(summary):,}.",
            USAGE,
        )
    return _resolve(ctx, req.incident_or_raise(), req.user, summary or None)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _resolve(ctx, click.incident_or_raise(), click.user, None)


def _resolve(ctx: Context, incident: Incident, user: str, summary: str | None) -> Reply:
    now = ctx.now()
    cleaned = clean_title(summary) if summary else None
    change, saved = ctx.store.change(incident, lambda current: resolve(current, by=user, now=now, summary=cleaned), now)
    if change is None:
        return Reply(f"{saved.ref} is already resolved.")
    ctx.timers.replan(saved.number)
    to_status_page(ctx, saved, "resolve", body=summary or "This incident has been resolved.")

    def announce() -> Reply | None:
        each(
            lambda: ctx.pager.close_pages(saved, stand_down=False),
            lambda: ctx.announcer.refresh(saved.number),
            lambda: ctx.announcer.everywhere(saved, change.text),
        )
        return None

    return Reply(f"{saved.ref} resolved.", after=announce)


ACTIONS = {ids.RESOLVE: on_click}
