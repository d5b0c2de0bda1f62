"""/incident rollback — propose moving all traffic back to a healthy revision; a button confirms.

Without a revision the target is the newest Ready revision created before the one serving the
most traffic (the runbook's Scenario 1A fix). The proposal shows the traffic split, the target
and who may confirm; only a confirm by one of them changes production (bot/production.py).
"""

from __future__ import annotations

from bot.changes import flow as production
from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.core.errors import UsageError
from bot.domain.proposals import ProposalKind
from bot.slack import ids

USAGE = "/incident rollback [INC-n] [revision]"
SUMMARY = "propose moving 100% of traffic to the last healthy revision (confirmed with a button)"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.open_incident_or_raise()
    words = req.args.split()
    if len(words) > 1:
        raise UsageError("Name at most one revision.", USAGE)
    revision = words[0] if words else None
    if revision is not None and not _looks_like_revision(revision):
        raise UsageError(f"`{revision[:40]}` is not a revision name (e.g. `tai-autonomics-00042-xyz`).", USAGE)
    return production.propose(ctx, incident, req.user, ProposalKind.ROLLBACK, revision, req.channel)


def on_propose_click(ctx: Context, click: ButtonClick) -> Reply:
    """The diagnose summary's Roll back button: the same proposal, for the revision triage named."""
    incident = click.incident_or_raise()
    if not incident.is_open:
        raise UsageError(f"{incident.ref} is resolved; nothing to roll back for it.")
    _, _, revision = click.value.partition(":")
    if not revision or not _looks_like_revision(revision):
        raise UsageError("That button carries no revision; run `/incident diagnose` again.")
    return production.propose(ctx, incident, click.user, ProposalKind.ROLLBACK, revision, click.channel)


def on_confirm(ctx: Context, click: ButtonClick) -> Reply:
    proposal_id, _ = production.parse_value(click.value)
    return Reply("", after=lambda: production.confirm(ctx, proposal_id, click.user))


def on_cancel(ctx: Context, click: ButtonClick) -> Reply:
    proposal_id, _ = production.parse_value(click.value)
    return Reply("", after=lambda: production.cancel(ctx, proposal_id, click.user))


def _looks_like_revision(text: str) -> bool:
    name = text.rsplit("/", 1)[-1]
    return 0 < len(name) <= 100 and all(c.isalnum() or c in "-_" for c in name) and name[0].isalpha()


ACTIONS = {
    ids.ROLLBACK_PROPOSE: on_propose_click,
    ids.ROLLBACK_CONFIRM: on_confirm,
    ids.ROLLBACK_CANCEL: on_cancel,
}
