"""/incident timeline — the timeline so far, in UTC with dates, grouped by the runbook's phases."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.domain.postmortem import started_at
from bot.slack.blocks import review as review_blocks

USAGE = "/incident timeline [INC-n]"
SUMMARY = "the timeline so far, by phase (detected … resolved), in UTC"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    events = ctx.store.timeline(incident.number)
    blocks = review_blocks.timeline(incident, events, started_at(incident, events))
    return Reply(f"{incident.ref} timeline: {len(events)} entries", blocks=blocks)
