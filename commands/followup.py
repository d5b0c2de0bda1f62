"""/incident followup — a follow-up action, listed in the post-mortem's Followup Actions."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.core.mrkdwn import user_text
from bot.domain.incidents import clean_title
from bot.incident.updates import MESSAGE_MAX
from bot.slack.grammar import within_limit

USAGE = "/incident followup [INC-n] <action, owner, date>"
SUMMARY = "record a follow-up action for the post-mortem"
NEEDS_INCIDENT = True
FOLLOWUP_MAX = 500


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    text = clean_title(req.args)
    if not text:
        raise UsageError("What is the follow-up action?", USAGE)
    within_limit(text, FOLLOWUP_MAX, "Follow-ups", USAGE)
    shown = user_text(text, MESSAGE_MAX)
    ctx.store.add_followup(incident.number, ctx.now(), req.user, text, f"<@{req.user}> added a follow-up: {shown}")
    return Reply(f"Follow-up recorded for {incident.ref}: {shown}")
