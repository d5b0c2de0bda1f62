"""/incident note — a line in the timeline (and so in the post-mortem), said by you, at this moment."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.core.mrkdwn import user_text
from bot.domain.records import EventKind
from bot.incident.updates import MESSAGE_MAX
from bot.slack.grammar import within_limit

USAGE = "/incident note [INC-n] <what happened or was decided>"
SUMMARY = "add a line to the timeline (a :pushpin: on a war-room message does the same)"
NEEDS_INCIDENT = True
NOTE_MAX = 2900


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    text = req.args.strip()
    if not text:
        raise UsageError("What should the timeline say?", USAGE)
    within_limit(text, NOTE_MAX, "Notes", USAGE)
    # Cut only as a safety net: escapes and mentions make the mrkdwn longer than what was typed.
    shown = user_text(text, MESSAGE_MAX)
    ctx.store.add_event(incident.number, ctx.now(), EventKind.NOTE, req.user, f"📝 <@{req.user}>: {shown}")
    return Reply(f"Noted in {incident.ref}'s timeline.")
