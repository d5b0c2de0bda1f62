"""/incident scale — propose a new memory limit or instance cap; a button confirms.

The runbook's fixes for memory exhaustion (Scenarios 1B and 8) and rate limits (9). The same
propose / confirm / execute / verify flow as rollback (bot/production.py); a template change
makes a new revision, and when traffic is pinned the proposal asks whether to move it too.
"""

from __future__ import annotations

from bot.changes import flow as production
from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.domain.proposals import ProposalKind, parse_instances, parse_memory
from bot.slack import ids

USAGE = "/incident scale [INC-n] memory <128Mi-32Gi> | max-instances <1-1000>"
SUMMARY = "propose a new memory limit or max instances (confirmed with a button)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    words = req.args.split()
    if len(words) != 2:
        raise UsageError("Say what to change and to what, e.g. `memory 1Gi` or `max-instances 20`.", USAGE)
    what, value = words[0].lower(), words[1]
    try:
        if what == "memory":
            size, _ = parse_memory(value)
            return production.propose(ctx, incident, req.user, ProposalKind.SCALE_MEMORY, size, req.channel)
        if what in ("max-instances", "max_instances", "instances"):
            count = parse_instances(value)
            return production.propose(
                ctx, incident, req.user, ProposalKind.SCALE_MAX_INSTANCES, str(count), req.channel
            )
    except ValueError as exc:
        raise UsageError(str(exc), USAGE) from exc
    raise UsageError(f"`{what[:30]}` cannot be scaled; use `memory` or `max-instances`.", USAGE)


def on_confirm(ctx: Context, click: ButtonClick) -> Reply:
    proposal_id, move = production.parse_value(click.value)
    return Reply("", after=lambda: production.confirm(ctx, proposal_id, click.user, move_traffic=move))


def on_cancel(ctx: Context, click: ButtonClick) -> Reply:
    proposal_id, _ = production.parse_value(click.value)
    return Reply("", after=lambda: production.cancel(ctx, proposal_id, click.user))


ACTIONS = {ids.SCALE_CONFIRM: on_confirm, ids.SCALE_CANCEL: on_cancel}
