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
from bot.core import counters as metrics
from bot.core.mrkdwn import escape
from bot.domain.escalation import Delivery, Firing
from bot.domain.incidents import Incident, start_fix
from bot.google.cloud import ServiceRef
from bot.oncall.directory import PeopleError
from bot.slack import ids
from bot.store import DeliveryRecord

if TYPE_CHECKING:
    from bot.diagnose.fanout import Report, Triage

USAGE = "/incident diagnose [INC-n]"
SUMMARY = "check Cloud Run, recent errors and health; name the runbook scenario"
NEEDS_INCIDENT = True
DELIVERY_KIND = "diagnose"

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
    firing = Firing(f"diagnose:{uuid.uuid4().hex[:12]}", (Delivery(DELIVERY_KIND, user),))
    ctx.store.record_firing(incident.number, firing, ctx.now())
    ctx.timers.wake_deliveries()
    return Reply(ack)


def run(ctx: Context, incident: Incident | None, user: str) -> Reply | None:
    """A diagnose for nobody's incident: the summary comes back to the asker only."""
    from bot.slack.blocks import diagnose as diagnose_blocks

    report, verdict = _diagnose(ctx, incident)
    summary = diagnose_blocks.summary_blocks(report, verdict, incident.number if incident else None)
    return Reply(diagnose_blocks.summary_text(report, verdict), blocks=summary)


def deliver(ctx: Context, delivery: DeliveryRecord, incident: Incident) -> None:
    """Send a `diagnose` delivery: read the sources, post the summary (keyed, so it is posted
    once), its details in its thread, and the timeline line."""
    from bot.slack.blocks import diagnose as diagnose_blocks

    target = ctx.announcer.war_room_target(incident)
    if target is None:
        raise PeopleError("the incident has no war room or announcement to post the diagnosis in yet")
    user = delivery.target
    report, verdict = _diagnose(ctx, incident)
    summary = diagnose_blocks.summary_blocks(report, verdict, incident.number)
    text = diagnose_blocks.summary_text(report, verdict)
    channel, thread_ts = target
    ctx.store.set_delivery_channel(delivery.id, channel, None, thread_ts)
    channel, ts = ctx.slack.post(channel, text, summary, thread_ts=thread_ts, key=f"delivery:{delivery.id}")
    ctx.store.finish_delivery(delivery.id, ctx.now(), user=None, channel=channel, ts=ts)
    likely = verdict.likely
    line = f"<@{user}> ran diagnose: " + (
        f"likely scenario {likely.scenario}, {escape(likely.title)}" if likely else "no runbook scenario matched"
    )
    if report.failed:
        line += f" ({', '.join(r.name for r in report.failed)} unavailable)"
    ctx.store.add_event(incident.number, ctx.now(), "diagnose", user, line)
    # Diagnosing is the runbook's INVESTIGATE & FIX step under way: the fix clock stops.
    current = ctx.store.get(incident.number)
    if current is not None:
        now = ctx.now()
        ctx.store.change(current, lambda latest: start_fix(latest, by=user, now=now, how="diagnose"), now)
    ctx.timers.replan(incident.number)
    # The summary is delivered and recorded: a detail line Slack refuses is logged, not retried
    # (retrying the delivery would find the summary and stop there).
    for detail in diagnose_blocks.detail_texts(report):
        try:
            ctx.slack.post(channel, detail[:3000], thread_ts=thread_ts or ts)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not post a diagnose detail for %s: %s", incident.ref, exc)


def _diagnose(ctx: Context, incident: Incident | None) -> tuple[Report, Triage]:
    # Imported here, after the ack: the diagnosis is not needed to start the bot or to ack anything.
    from bot.diagnose.fanout import diagnose, triage

    service = ctx.config.service
    ref = ServiceRef(service.project, service.region, service.name, service.health_url)
    with metrics.DIAGNOSE_SECONDS.time():
        report = diagnose(ctx.cloud, ref, ctx.now())
    return report, triage(report, incident.severity if incident else "")


# The summary's Roll back button (`rollback_propose`) is handled by commands/rollback.py.
ACTIONS = {ids.DIAGNOSE: on_click}
DELIVERIES = {DELIVERY_KIND: deliver}
