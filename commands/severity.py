"""/incident severity — change an incident's severity; paging and timers follow the new path."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.domain import pagerduty
from bot.domain.incidents import Change, Incident, change_severity, parse_severity
from bot.slack.blocks import incident as blocks

USAGE = "/incident severity [INC-n] <p1|p2|p3|p4>"
SUMMARY = "change severity (raising pages what the new path has reached)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    severity = parse_severity(req.args.strip() or None, USAGE)
    now = ctx.now()
    before: list[str] = []

    def decide(current: Incident) -> Change | None:
        before[:] = [current.severity]  # the severity this decision changes (read again on a retry)
        return change_severity(current, severity=severity, by=req.user)

    # PagerDuty's trigger (into its severities) or resolve (out of them), owed with the change.
    owed = ctx.store.firing_writer(lambda new: pagerduty.on_severity(ctx.paging_out, before[0], new), now)
    change, saved = ctx.store.change(incident, decide, now, also=owed)
    if change is None:
        return Reply(f"{saved.ref} is already {blocks.severity_label(ctx.config, severity)}.")

    def announce() -> Reply | None:
        try:
            # A severity with a war room gets one now; set-up is idempotent for the rest.
            ctx.announcer.setup(saved.number)
            ctx.announcer.refresh(saved.number)
            ctx.announcer.everywhere(saved, f"{change.text}.")
        finally:
            ctx.timers.replan(saved.number)
        return None

    ctx.timers.wake_deliveries()

    return Reply(f"{saved.ref} is now {blocks.severity_label(ctx.config, severity)}.", after=announce)
