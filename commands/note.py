"""/incident note — a line in the timeline (and so in the post-mortem), said by you, at this moment."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.errors import UsageError
from bot.mrkdwn import user_text

USAGE = "/incident note [INC-n] <what happened or was decided>"
SUMMARY = "add a line to the timeline (a :pushpin: on a war-room message does the same)"
NEEDS_INCIDENT = True
NOTE_MAX = 2900


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    text = req.args.strip()
    if not text:
        raise UsageError("What should the timeline say?", USAGE)
    if len(text) > NOTE_MAX:
        raise UsageError(f"Notes are limited to {NOTE_MAX:,} characters; yours has {len(text):,}.", USAGE)
    ctx.store.add_event(incident.number, ctx.now(), "note", req.user, f"📝 <@{req.user}>: {user_text(text, NOTE_MAX)}")
    return Reply(f"Noted in {incident.ref}'s timeline.")
