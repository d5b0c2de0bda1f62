"""/incident page — page a person, a role or a Slack user group now, with an Acknowledge button.

A person is paged by hand at most once per incident within `paging.manual_repeat_after`
(default 5 min): the repeat is answered with when they were paged, and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from bot.context import CommandRequest, Context, Reply
from bot.core.durations import humanize
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
    person = mentioned_user(target)
    # A person's manual pages carry their ID in the key, so a repeat within the window is found.
    prefix = f"manual:{person}:" if person else "manual:"
    firing = Firing(
        f"{prefix}{uuid.uuid4().hex[:12]}",
        (Delivery(DeliveryKind.PAGE, target, detail), Delivery(DeliveryKind.PAGED_NOTE, target, detail)),
    )
    now = ctx.now()
    if person:
        window = ctx.config.paging.manual_repeat_after
        earlier = ctx.store.record_firing_unless_recent(incident.number, firing, now, prefix, window)
        if earlier is not None:
            ago = humanize(now - earlier)
            again = humanize(max(earlier + window - now, timedelta(seconds=1)))
            return Reply(
                f"<@{person}> was paged for {incident.ref} {ago} ago (at {earlier:%H:%M:%S} UTC); "
                f"nothing was sent. They can be paged by hand again in {again}."
            )
    else:
        ctx.store.record_firing(incident.number, firing, now)
    ctx.timers.wake_deliveries()
    if person:
        who = f"<@{target}>"
    elif group is not None:
        who = f"the user group {escape(usergroup_label(target_text))}"
    else:
        who = f"the {target} role"
    return Reply(f"Paging {who} for {incident.ref}.")


def _roles(ctx: Context) -> str:
    return f"\nRoles: {', '.join(ctx.config.people) or 'none configured'}."
