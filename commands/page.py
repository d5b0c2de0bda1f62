"""/incident page — page a person or a role now, with an Acknowledge button."""

from __future__ import annotations

import uuid

from bot.context import CommandRequest, Context, Reply
from bot.errors import UsageError
from bot.escalation import Delivery, Firing
from bot.incidents import clean_inline
from bot.people import mentioned_user

USAGE = "/incident page [INC-n] <@user|role>"
SUMMARY = "page someone now (a person or a role from the config)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    target_text = req.args.strip()
    if not target_text or " " in target_text:
        raise UsageError("Page whom? Name one person (`@alice`) or one role.", USAGE + _roles(ctx))
    target = mentioned_user(target_text) or target_text
    if target not in ctx.config.people and mentioned_user(target) is None:
        shown = clean_inline(target_text[:40])
        raise UsageError(f"`{shown}` is neither a person (`@alice`) nor a role.", USAGE + _roles(ctx))
    detail = f"a manual page from <@{req.user}>"
    firing = Firing(
        f"manual:{uuid.uuid4().hex[:12]}",
        (Delivery("page", target, detail), Delivery("paged_note", target, detail)),
    )
    ctx.store.record_firing(incident.number, firing, ctx.now())
    ctx.timers.wake_deliveries()
    who = f"<@{target}>" if mentioned_user(target) else f"the {target} role"
    return Reply(f"Paging {who} for {incident.ref}.")


def _roles(ctx: Context) -> str:
    return f"\nRoles: {', '.join(ctx.config.people) or 'none configured'}."
