"""/incident list — the open incidents: severity, age, commander, time since last update."""

from __future__ import annotations

from bot import blocks
from bot.context import CommandRequest, Context, Reply

USAGE = "/incident list"
SUMMARY = "open incidents with age, commander and last update"


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incidents = ctx.store.open_incidents()
    text = f"{len(incidents)} open incident(s)" if incidents else "No open incidents."
    return Reply(text, blocks=blocks.incident_list(ctx.config, incidents, ctx.now()))
