"""/incident postmortem — write the post-mortem draft again from the record, and upload it."""

from __future__ import annotations

import uuid

from bot.context import CommandRequest, Context, Reply
from bot.domain.deliveries import Delivery, DeliveryKind, Firing

USAGE = "/incident postmortem [INC-n]"
SUMMARY = "(re)write the post-mortem draft and upload it to the war room"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident_or_raise()
    # A delivery like the draft on resolve: retried until Slack takes it, even across a restart.
    firing = Firing(
        f"postmortem:draft:manual:{uuid.uuid4().hex[:12]}",
        (Delivery(DeliveryKind.POSTMORTEM_DRAFT, "incident", "manual"),),
    )
    ctx.store.record_firing(incident.number, firing, ctx.now())
    ctx.timers.wake_deliveries()
    where = f"<#{incident.war_room_id}>" if incident.war_room_id else "the announcement's thread"
    return Reply(
        f"Writing {incident.ref}'s post-mortem draft from the timeline; it will be uploaded to {where}. "
        f"`incident-bot postmortem {incident.ref}` prints it."
    )
