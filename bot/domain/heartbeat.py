"""Whether the leader may call its dead man's switch (`heartbeat.url`) now: pure, no I/O.

The heartbeat says "this pager works", so it is sent only when every part of that holds: this
instance leads, its scheduler runs its jobs on time (the heartbeat job's own lateness is the
measure: a stuck or starved scheduler runs it late or never), and the oldest delivery not yet
accepted by Slack is younger than `max_backlog` (a page Slack keeps refusing stops the pings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class HeartbeatVerdict:
    ping: bool
    reason: str  # why not (empty when ping)


def heartbeat_verdict(
    now: datetime,
    *,
    leading: bool,
    scheduler_running: bool,
    planned_at: datetime,
    lag_bound: timedelta,
    oldest_undelivered: datetime | None,
    max_backlog: timedelta,
) -> HeartbeatVerdict:
    """`planned_at`: when this heartbeat run was due; later than `lag_bound` means timers lag."""
    if not leading:
        return HeartbeatVerdict(False, "not the leader")
    if not scheduler_running:
        return HeartbeatVerdict(False, "the scheduler or the delivery loop is not running")
    lag = now - planned_at
    if lag > lag_bound:
        return HeartbeatVerdict(
            False, f"timers lag {lag.total_seconds():.1f}s (bound {lag_bound.total_seconds():.1f}s)"
        )
    if oldest_undelivered is not None and now - oldest_undelivered >= max_backlog:
        age = (now - oldest_undelivered).total_seconds()
        return HeartbeatVerdict(False, f"oldest undelivered message is {age:.0f}s old (max_backlog {max_backlog})")
    return HeartbeatVerdict(True, "")
