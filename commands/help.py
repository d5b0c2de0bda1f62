"""/incident help — every subcommand with its usage."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply

USAGE = "/incident help"
SUMMARY = "this list"


def handle(ctx: Context, req: CommandRequest) -> Reply:
    return Reply(usage_text())


def usage_text() -> str:
    from commands import REGISTRY  # the registry imports this module, so look it up late

    lines = [f"`{sub.usage}` — {sub.summary}" for sub in REGISTRY.values()]
    return (
        "*/incident* runs the incident runbook from Slack. Name an incident with `INC-7`; "
        "inside a war room it is implied.\n" + "\n".join(lines)
    )
