"""The buttons on an alert's proposal: Declare (opens the incident) and Dismiss.

Not a verb: `commands/__init__.py` registers its ACTIONS beside the verbs' own. Both are
idempotent: the store links an alert to one incident only, so a double click, or two people
clicking at once, declares once; a second Dismiss changes nothing.
"""

from __future__ import annotations

from bot.alerts import intake as alert_incidents
from bot.context import ButtonClick, Context, Reply
from bot.core.errors import UsageError
from bot.domain.records import AlertRecord
from bot.incident.opening import set_up
from bot.slack import ids
from bot.slack.blocks import incident as blocks
from bot.store import AlertTaken


def on_declare(ctx: Context, click: ButtonClick) -> Reply:
    record = _alert(ctx, click)
    if record.incident is not None:
        return Reply(f"INC-{record.incident} was already declared for this alert.")
    if record.dismissed_by:
        return Reply(f"<@{record.dismissed_by}> dismissed this alert; declare with `/incident declare` if it matters.")
    try:
        incident = alert_incidents.declare(ctx, record, by=click.user)
    except AlertTaken as exc:
        return Reply(f"INC-{exc.incident} was already declared for this alert.")

    def announce() -> Reply | None:
        reply = set_up(ctx, incident)
        alert_incidents.settle_linked(ctx, incident.number)  # proposals edited, alerts linked in the thread
        return reply

    label = blocks.severity_label(ctx.config, incident.severity)
    return Reply(f"{incident.ref} declared ({label}). Announcing it in #{ctx.config.channel}…", after=announce)


def on_dismiss(ctx: Context, click: ButtonClick) -> Reply:
    record = _alert(ctx, click)
    dismissed, current = ctx.store.dismiss_alert(record.id, by=click.user)
    if not dismissed:
        assert current is not None
        if current.incident is not None:
            return Reply(f"This alert is already INC-{current.incident}; resolve that instead.")
        return Reply(f"<@{current.dismissed_by}> already dismissed this alert.")
    assert current is not None
    saved = current
    # The proposal stands for its whole alert group: its waiting groupmates are dismissed too.
    for other in alert_incidents.proposal_group(ctx, current):
        if other.id != current.id and other.incident is None and not other.dismissed_by:
            ctx.store.dismiss_alert(other.id, by=click.user)

    def show() -> Reply | None:
        alert_incidents.refresh_proposal(ctx, saved)
        return None

    return Reply("Dismissed. The alert stays recorded; nothing is declared.", after=show)


def _alert(ctx: Context, click: ButtonClick) -> AlertRecord:
    prefix, _, number = click.value.partition(":")
    record = ctx.store.alert(int(number)) if prefix == "alert" and number.isdigit() else None
    if record is None:
        raise UsageError("That alert is not known here (any more).")
    return record


ACTIONS = {ids.ALERT_DECLARE: on_declare, ids.ALERT_DISMISS: on_dismiss}
