"""/incident resolve — mark an incident resolved and show it so on its announcement."""

from __future__ import annotations

from bot import ids
from bot.context import ButtonClick, CommandRequest, Context, Reply, each
from bot.errors import UsageError
from bot.incidents import Incident, clean_title, resolve
from bot.statuspage import GENERIC_RESOLVED
from bot.text import length
from commands.update import to_status_page

USAGE = "/incident resolve [INC-n] [--public] [summary]"
SUMMARY = "resolve: all-clear, timers stop"
NEEDS_INCIDENT = True
SUMMARY_MAX = 2000


def handle(ctx: Context, req: CommandRequest) -> Reply:
    summary = req.args.strip()
    # The summary is written for the team; it goes on the status page only when asked for.
    public = summary.split(None, 1)[:1] == ["--public"]
    if public:
        summary = summary.removeprefix("--public").strip()
        if ctx.pager.statuspage is None:
            raise UsageError("No status page is configured (see `statuspage` in the config).", USAGE)
    if length(summary) > SUMMARY_MAX:
        raise UsageError(
            f"Summaries are limited to {SUMMARY_MAX:,} characters; yours has {length(summary):,}.",
            USAGE,
        )
    return _resolve(ctx, req.incident_or_raise(), req.user, summary or None, public=public)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _resolve(ctx, click.incident_or_raise(), click.user, None)


def _resolve(ctx: Context, incident: Incident, user: str, summary: str | None, public: bool = False) -> Reply:
    now = ctx.now()
    cleaned = clean_title(summary) if summary else None
    change, saved = ctx.store.change(incident, lambda current: resolve(current, by=user, now=now, summary=cleaned), now)
    if change is None:
        return Reply(f"{saved.ref} is already resolved.")
    ctx.timers.replan(saved.number)
    to_status_page(ctx, saved, "resolve", body=summary if public and summary else GENERIC_RESOLVED)

    def announce() -> Reply | None:
        each(
            lambda: ctx.pager.close_pages(saved, stand_down=False),
            lambda: ctx.announcer.refresh(saved.number),
            lambda: ctx.announcer.everywhere(saved, change.text),
        )
        return None

    return Reply(f"{saved.ref} resolved.", after=announce)


ACTIONS = {ids.RESOLVE: on_click}
