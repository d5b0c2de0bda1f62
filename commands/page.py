"""/incident page — page a person, a role or a Slack user group now, with an Acknowledge button."""

from __future__ import annotations

import uuid

from bot.context import CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.core.mrkdwn import escape
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.incidents import clean_inline
from bot.oncall.directory import mentioned_user, mentioned_usergroup, usergroup_label

USAGE = "/incident page [INC-n] <@user|@user-group|role>"
SUMMARY = "page someone now (a person, a Slack user group, or a role from the config)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    target_text = req.args.strip()
    if not target_text or " " in target_text:
        raise UsageError("Page whom? Name one person (`@alice`), one user group or one role.", USAGE + _roles(ctx))
    group = mentioned_usergroup(target_text)
    if group is not None and not group.startswith("subteam:"):
        group = None  # Slack sends a group that exists as <!subteam^…>; a bare @word it left as text is none
    target = mentioned_user(target_text) or group or target_text
    if target not in ctx.config.people and mentioned_user(target) is None and group is None:
        shown = clean_inline(target_text[:40])
        raise UsageError(
            f"`{shown}` is neither a person (`@alice`), a user group (`@oncall-team`) nor a role.", USAGE + _roles(ctx)
        )
    detail = f"a manual page from <@{req.user}>"
    firing = Firing(
        f"manual:{uuid.uuid4().hex[:12]}",
        (Delivery(DeliveryKind.PAGE, target, detail), Delivery(DeliveryKind.PAGED_NOTE, target, detail)),
    )
    ctx.store.record_firing(incident.number, firing, ctx.now())
    ctx.timers.wake_deliveries()
    if mentioned_user(target):
        who = f"<@{target}>"
    elif group is not None:
        who = f"the user group {escape(usergroup_label(target_text))}"
    else:
        who = f"the {target} role"
    return Reply(f"Paging {who} for {incident.ref}.")


def _roles(ctx: Context) -> str:
    return f"\nRoles: {', '.join(ctx.config.people) or 'none configured'}."
