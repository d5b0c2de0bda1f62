"""Running a diagnose: the sources read in parallel (`bot.diagnose.fanout`), triaged, and the
summary posted to the incident's channel, or returned to the asker when there is no incident.

The summary owed to an incident is a delivery (kind `diagnose`), so a crash mid-diagnose runs it
again at start-up, and a summary that did land (its key is in Slack) is not posted twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.context import Context, Reply
from bot.core import counters as metrics
from bot.core.mrkdwn import escape
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet
from bot.delivery.once import post_delivery
from bot.domain.deliveries import DeliveryKind
from bot.domain.incidents import Incident, start_fix
from bot.domain.records import DeliveryRecord, EventKind
from bot.domain.service import ServiceRef

if TYPE_CHECKING:
    from bot.domain.findings import Report
    from bot.domain.triage import Triage

log = logging.getLogger(__name__)


def run(ctx: Context, incident: Incident | None, user: str) -> Reply | None:
    """A diagnose for nobody's incident: the summary comes back to the asker only."""
    from bot.slack.blocks import diagnose as diagnose_blocks  # after the ack, like the sources (below)

    report, verdict = _diagnose(ctx, incident)
    summary = diagnose_blocks.summary_blocks(report, verdict, incident.number if incident else None)
    return Reply(diagnose_blocks.summary_text(report, verdict), blocks=summary)


def routes(ctx: Context) -> dict[DeliveryKind, Route]:
    return {DeliveryKind.DIAGNOSE: Route(lambda delivery, incident: deliver(ctx, delivery, incident))}


def deliver(ctx: Context, delivery: DeliveryRecord, incident: Incident) -> None:
    """Send a `diagnose` delivery: read the sources, post the summary (keyed, so it is posted
    once), its details in its thread, and the timeline line."""
    from bot.slack.blocks import diagnose as diagnose_blocks  # after the ack, like the sources (below)

    target = ctx.announcer.war_room_target(incident)
    if target is None:
        raise NotPlacedYet("the incident has no war room or announcement to post the diagnosis in yet")
    user = delivery.target
    report, verdict = _diagnose(ctx, incident)
    summary = diagnose_blocks.summary_blocks(report, verdict, incident.number)
    text = diagnose_blocks.summary_text(report, verdict)
    channel, thread_ts = target
    channel, ts = post_delivery(ctx.store, ctx.slack, ctx.now(), delivery, channel, text, summary, thread_ts=thread_ts)
    likely = verdict.likely
    line = f"<@{user}> ran diagnose: " + (
        f"likely scenario {likely.scenario}, {escape(likely.title)}" if likely else "no runbook scenario matched"
    )
    if report.failed:
        line += f" ({', '.join(r.name for r in report.failed)} unavailable)"
    ctx.store.add_event(incident.number, ctx.now(), EventKind.DIAGNOSE, user, line)
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
    from bot.diagnose.fanout import diagnose
    from bot.domain.triage import triage

    service = ctx.config.service
    ref = ServiceRef(service.project, service.region, service.name, service.health_url)
    with metrics.DIAGNOSE_SECONDS.time():
        report = diagnose(ctx.cloud, ref, ctx.now())
    return report, triage(report, incident.severity if incident else "")
