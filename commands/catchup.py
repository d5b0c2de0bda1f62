"""/incident catchup — the story so far in a few lines, only to the asker (built from the store)."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.incident import catchup

USAGE = "/incident catchup [INC-n]"
SUMMARY = "the story so far, only to you: status, ack, last updates, diagnosis, fix, next timer"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    return Reply(catchup.text(ctx, incident))
