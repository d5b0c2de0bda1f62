"""/incident list — the open incidents: severity, age, commander, time since last update."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.slack.blocks import incident as blocks

USAGE = "/incident list"
SUMMARY = "open incidents with age, commander and last update"
# What one message can usefully show; beyond it the reply counts the rest per severity. The
# store reads only these rows, so a thousand open incidents cost what twenty-five do.
SHOWN = 25


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incidents, counts = ctx.store.open_overview(list(ctx.config.severities), SHOWN)
    total = sum(counts.values())
    text = f"{total} open incident(s)" if total else "No open incidents."
    return Reply(text, blocks=blocks.incident_list(ctx.config, incidents, ctx.now(), counts))
