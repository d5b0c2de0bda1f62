"""/incident diagnose — the runbook's first-minutes checks, in parallel, in one summary.

Cloud Run (service and revisions), Cloud Logging (errors, request stats, signals) and the health
endpoint are read at once, each under its own timeout; triage names the runbook scenario that
fits. The summary goes to the war room, each source's detail into its thread.
"""

from __future__ import annotations

from bot import ids, metrics
from bot.cloud import ServiceRef
from bot.context import ButtonClick, CommandRequest, Context, Reply
from bot.incidents import Incident, start_fix
from bot.mrkdwn import escape

USAGE = "/incident diagnose [INC-n]"
SUMMARY = "check Cloud Run, recent errors and health; name the runbook scenario"
NEEDS_INCIDENT = True


def handle(ctx: Context, req: CommandRequest) -> Reply:
    incident = req.incident  # optional: without one, the summary comes back to the asker only
    if incident is not None and not incident.is_open:
        incident = None
    return _start(ctx, incident, req.user)


def on_click(ctx: Context, click: ButtonClick) -> Reply:
    return _start(ctx, click.incident_or_raise(), click.user)


def _start(ctx: Context, incident: Incident | None, user: str) -> Reply:
    service = ctx.config.service
    target = f"{service.name} ({service.region})"
    return Reply(
        f"Diagnosing {target}: Cloud Run, Cloud Logging and the health endpoint, in parallel…",
        after=lambda: run(ctx, incident, user),
    )


def run(ctx: Context, incident: Incident | None, user: str) -> Reply | None:
    # Imported here, after the ack: the diagnosis is not needed to start the bot or to ack anything.
    from bot import diagnose_blocks
    from bot.diagnostics import diagnose, triage

    service = ctx.config.service
    ref = ServiceRef(service.project, service.region, service.name, service.health_url)
    with metrics.DIAGNOSE_SECONDS.time():
        report = diagnose(ctx.cloud, ref, ctx.now())
    verdict = triage(report, incident.severity if incident else "")
    summary = diagnose_blocks.summary_blocks(report, verdict, incident.number if incident else None)
    text = diagnose_blocks.summary_text(report, verdict)
    if incident is None:
        return Reply(text, blocks=summary)
    target = ctx.announcer.war_room_target(incident)
    if target is None:
        return Reply(text, blocks=summary)
    channel, thread_ts = target
    channel, ts = ctx.slack.post(channel, text, summary, thread_ts=thread_ts)
    for detail in diagnose_blocks.detail_texts(report):
        ctx.slack.post(channel, detail[:3000], thread_ts=thread_ts or ts)
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
    return None


# The summary's Roll back button (`rollback_propose`) is handled by commands/rollback.py.
ACTIONS = {ids.DIAGNOSE: on_click}
