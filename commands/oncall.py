"""/incident oncall — who holds each role now, resolved to Slack users."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.people import PeopleError

USAGE = "/incident oncall"
SUMMARY = "who holds each on-call role"


def handle(ctx: Context, req: CommandRequest) -> Reply:
    # Emails are looked up in Slack, which may take a moment: answer after the ack.
    return Reply("", after=lambda: Reply(roster(ctx)))


def roster(ctx: Context) -> str:
    lines = []
    for role in ctx.config.people:
        try:
            holders = ", ".join(f"<@{u}>" for u in ctx.directory.users(role))
        except PeopleError as exc:
            holders = f"⚠️ {exc}"
        lines.append(f"*{role}*: {holders}")
    open_incidents = ctx.store.open_incidents()
    for incident in open_incidents[:10]:
        roles = [f"commander <@{incident.commander}>"]
        roles += [f"{r} <@{u}>" for r in ("scribe", "comms") if (u := incident.role_holder(r))]
        lines.append(f"*{incident.ref}*: {', '.join(roles)}")
    return "\n".join(lines) or "No roles are configured (see `people` in the config)."
