"""Incident statistics: count, MTTA, MTTR (median and p90) and ack SLA breaches by severity. Pure.

The store hands over only the window's incidents (a range scan of an index on `declared_at`);
the arithmetic here needs nothing else. MTTA counts from declaration to acknowledgement, MTTR
from declaration to resolution; an incident still open counts toward the total and, once past
its `ack_within` unacknowledged, toward the breaches, but not toward MTTA or MTTR.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.durations import humanize
from bot.core.errors import UsageError
from bot.domain.records import StatRow

MAX_WINDOW_DAYS = 365
DEFAULT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class SeverityStats:
    severity: str
    count: int
    mtta_median: timedelta | None
    mtta_p90: timedelta | None
    mttr_median: timedelta | None
    mttr_p90: timedelta | None
    ack_breaches: int


def parse_window(text: str, usage: str) -> timedelta:
    """`7d`, `30d`, `90d` (any whole number of days up to a year); empty means 30 days."""
    text = text.strip().lower()
    if not text:
        return DEFAULT_WINDOW
    match = re.fullmatch(r"(\d{1,6})\s*d", text)
    if not match:
        shown = text[:20].replace("`", "'")
        raise UsageError(f"`{shown}` is not a window. Use a number of days, such as 7d, 30d or 90d.", usage)
    days = int(match.group(1))
    if not 1 <= days <= MAX_WINDOW_DAYS:
        raise UsageError(f"The window must be 1 to {MAX_WINDOW_DAYS} days (7d, 30d, 90d); {days}d is not.", usage)
    return timedelta(days=days)


def median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=statistics.median(v.total_seconds() for v in values))


def p90(values: list[timedelta]) -> timedelta | None:
    """The nearest-rank 90th percentile: the smallest value at least 90% of values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


def compute(rows: list[StatRow], ack_within: dict[str, timedelta | None], now: datetime) -> list[SeverityStats]:
    """One line per severity that had incidents, highest severity first."""
    out = []
    for severity in sorted({r.severity for r in rows}):
        mine = [r for r in rows if r.severity == severity]
        # From detection, as the SLA warning and the post-mortem measure: an alert's start when
        # an alert opened the incident, else the declare.
        mtta = [r.acknowledged_at - r.detected for r in mine if r.acknowledged_at]
        mttr = [r.resolved_at - r.detected for r in mine if r.resolved_at]
        limit = ack_within.get(severity)
        breaches = 0
        if limit is not None:
            for r in mine:
                taken = (r.acknowledged_at or now) - r.detected
                if taken > limit:
                    breaches += 1
        out.append(SeverityStats(severity, len(mine), median(mtta), p90(mtta), median(mttr), p90(mttr), breaches))
    return out


def _fmt(delta: timedelta | None) -> str:
    return humanize(delta) if delta is not None else "—"


def summary_line(stats: list[SeverityStats], window: timedelta) -> str:
    total = sum(s.count for s in stats)
    breaches = sum(s.ack_breaches for s in stats)
    days = window.days
    return (
        f"Last {days} day{'s' if days != 1 else ''}: {total} incident{'s' if total != 1 else ''}, "
        f"{breaches} ack SLA breach{'es' if breaches != 1 else ''}"
    )


def severity_line(s: SeverityStats) -> str:
    return (
        f"{s.severity}: {s.count} · MTTA median {_fmt(s.mtta_median)}, p90 {_fmt(s.mtta_p90)} · "
        f"MTTR median {_fmt(s.mttr_median)}, p90 {_fmt(s.mttr_p90)} · "
        f"{s.ack_breaches} ack SLA breach{'es' if s.ack_breaches != 1 else ''}"
    )


def report(stats: list[SeverityStats], window: timedelta) -> str:
    """The plain-text report `incident-bot stats` prints and `/incident stats` shows."""
    return "\n".join([summary_line(stats, window), *(severity_line(s) for s in stats)])
