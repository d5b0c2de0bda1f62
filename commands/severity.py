"""/incident severity — change an incident's severity; paging and timers follow the new path."""

from __future__ import annotations

from bot import blocks
from bot.context import CommandRequest, Context, Reply
from bot.incidents import change_severity, parse_severity

USAGE = "/incident severity [INC-n] <p1|p2|p3|p4>"
SUMMARY = "change severity (raising pages what the new path has reached)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    severity = parse_severity(req.args.strip() or None, USAGE)
    now = ctx.now()
    while True:
        change = change_severity(incident, severity=severity, by=req.user)
        if change is None:
            return Reply(f"{incident.ref} is already {blocks.severity_label(ctx.config, severity)}.")
        saved = ctx.store.apply(change, now, old=incident)
        if saved is not None:
            break
        incident = ctx.store.get(incident.number) or incident

    def announce() -> Reply | None:
        try:
            # A severity with a war room gets one now; set-up is idempotent for the rest.
            ctx.announcer.setup(saved.number)
            ctx.announcer.refresh(saved.number)
            ctx.announcer.everywhere(
                saved,
                f"🔺 {change.text}." if severity < incident.severity else f"🔻 {change.text}.",
            )
        finally:
            ctx.timers.replan(saved.number)
        return None

    return Reply(f"{saved.ref} is now {blocks.severity_label(ctx.config, severity)}.", after=announce)
