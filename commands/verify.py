"""/incident verify [INC-n] [duration] — the runbook's VERIFY step on demand.

Watches the service for the duration (default `verify.window`, 5 min), sampling health, the
5xx rate and p95 of its requests and the smoke calls every `verify.every`, in one message edited
in place; says "Held … ready to resolve" or "Regressed at +2m: …" (bot/changes/verify.py). A
confirmed rollback or scale starts the same watch by itself.
"""

from __future__ import annotations

from datetime import timedelta

from bot.changes import verify
from bot.context import CommandRequest, Context, Reply
from bot.core.durations import humanize, parse_duration
from bot.core.errors import UsageError
from bot.domain.verify import WatchStatus

USAGE = "/incident verify [INC-n] [duration]"
SUMMARY = "watch health, 5xx rate, p95 and smoke calls for the verify window; say whether the fix held"
NEEDS_INCIDENT = True
MAX_WINDOW = timedelta(hours=1)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is resolved; there is nothing to verify. `/incident reopen` it first.", USAGE)
    args = req.args.strip()
    window = ctx.config.verify.window
    if args:
        try:
            window = parse_duration(args)
        except ValueError as exc:
            raise UsageError(f"`{args[:20]}` is not a duration (e.g. `5m` or `90s`).", USAGE) from exc
        if not timedelta(seconds=1) <= window <= MAX_WINDOW:
            raise UsageError(f"Verify for between 1s and {humanize(MAX_WINDOW)}.", USAGE)
    running = ctx.store.watches(WatchStatus.WATCHING, incident=incident.number)
    if running:
        raise UsageError(f"{incident.ref} is already being verified (since {running[0].started_at:%H:%M:%S} UTC).")

    def watch() -> Reply | None:
        started = verify.start(ctx, incident, by=req.user, why=f"asked by <@{req.user}>", window=window)
        if started is None:
            return Reply(f"{incident.ref} has no war room or announcement yet; try again in a moment.")
        return None

    return Reply(f"Verifying {ctx.config.service.name} for {humanize(window)}…", after=watch)
