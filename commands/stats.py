"""/incident stats — count, MTTA, MTTR (median, p90) and ack SLA breaches by severity."""

from __future__ import annotations

from datetime import timedelta

from bot.context import CommandRequest, Context, Reply
from bot.domain import stats as incident_stats
from bot.slack.blocks import review as review_blocks

USAGE = "/incident stats [7d|30d|90d]"
SUMMARY = "count, MTTA, MTTR and ack SLA breaches by severity"


def handle(ctx: Context, req: CommandRequest) -> Reply:
    window = incident_stats.parse_window(req.args, USAGE)
    text = report(ctx, window)
    return Reply(text, blocks=review_blocks.stats(text.splitlines()))


def report(ctx: Context, window: timedelta) -> str:
    now = ctx.now()
    rows = ctx.store.stat_rows(now - window)
    ack_within = {name: policy.ack_within for name, policy in ctx.config.severities.items()}
    return incident_stats.report(incident_stats.compute(rows, ack_within, now), window)
