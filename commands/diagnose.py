"""/incident diagnose — the runbook's first-minutes checks, in parallel, in one summary.

Cloud Run (service and revisions), Cloud Logging (errors, request stats, signals) and the health
endpoint are read at once, each under its own timeout; triage names the runbook scenario that
fits. The summary goes to the war room, each source's detail into its thread.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.diagnose.run import run
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.incidents import Incident
from bot.slack import ids

if TYPE_CHECKING:
    pass

USAGE = "/incident diagnose [INC-n]"
SUMMARY = "check Cloud Run, recent errors and health; name the runbook scenario"
NEEDS_INCIDENT = True

log = logging.getLogger(__name__)


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident  # optional: without one, the summary comes back to the asker only
    if incident is not None and not incident.is_open:
        incident = None
    return _start(ctx, incident, req.user)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _start(ctx, click.incident_or_raise(), click.user)


def _start(ctx: Context, incident: Incident | None, user: str) -> Reply:
    service = ctx.config.service
    ack = (
        f"Diagnosing {service.name} ({service.region}): Cloud Run, Cloud Logging and the health endpoint, in parallel…"
    )
    if incident is None:
        return Reply(ack, after=lambda: run(ctx, None, user))
    # The summary is owed to the incident's channel: a delivery, so a crash mid-diagnose runs it
    # again at start-up, and a summary that did land (its key is in Slack) is not posted twice.
    firing = Firing(f"diagnose:{uuid.uuid4().hex[:12]}", (Delivery(DeliveryKind.DIAGNOSE, user),))
    ctx.store.record_firing(incident.number, firing, ctx.now())
    ctx.timers.wake_deliveries()
    return Reply(ack)


# The summary's Roll back button (`rollback_propose`) is handled by commands/rollback.py.
ACTIONS = {ids.DIAGNOSE: on_click}
