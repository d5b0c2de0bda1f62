"""/incident role — give someone an incident role: commander, scribe or comms."""

from __future__ import annotations

from bot.context import CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.domain.incidents import assign_role, clean_inline
from bot.domain.policy import INCIDENT_ROLES
from bot.oncall.directory import mentioned_user

USAGE = "/incident role [INC-n] <commander|scribe|comms> <@user>"
SUMMARY = "assign an incident role (the declarer is commander until changed)"
NEEDS_INCIDENT = True

ROLE_DUTIES = {
    "commander": "You run the response: decide, delegate, and keep the updates coming "
    "(`/incident update`). Hand over with `/incident role commander @someone`.",
    "scribe": "You keep the timeline: record what is tried and learnt with `/incident update`, "
    "so the timeline tells the story afterwards.",
    "comms": "You keep customers and the company informed: status page and #incident-response "
    "updates on the severity's cadence.",
}


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    parts = req.args.split()
    if len(parts) != 2:
        raise UsageError("Name a role and a person.", USAGE)
    role, who = parts[0].lower(), parts[1]
    if role not in INCIDENT_ROLES:
        shown = clean_inline(role[:30])
        raise UsageError(f"`{shown}` is not an incident role. Roles: {', '.join(INCIDENT_ROLES)}.", USAGE)
    user = mentioned_user(who)
    if user is None:
        raise UsageError("Name the person with an @-mention.", USAGE)
    now = ctx.now()
    change, saved = ctx.store.change(
        incident, lambda current: assign_role(current, role=role, user=user, by=req.user), now
    )
    if change is None:
        return Reply(f"<@{user}> is already {role} of {saved.ref}.")

    def announce() -> Reply | None:
        ctx.announcer.refresh(saved.number)
        ctx.announcer.everywhere(saved, f"👤 {change.text} of {saved.ref}.")
        if saved.war_room_id:
            ctx.slack.invite(saved.war_room_id, [user])
        ctx.slack.post(
            ctx.slack.open_dm(user),
            f"You are now {role} of {saved.ref}.",
            [
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"<@{req.user}> made you *{role}* of *{saved.ref}*"
                        + (f" (war room <#{saved.war_room_id}>)" if saved.war_room_id else "")
                        + f".\n{ROLE_DUTIES[role]}",
                    },
                }
            ],
        )
        return None

    return Reply(f"<@{user}> is now {role} of {saved.ref}.", after=announce)
