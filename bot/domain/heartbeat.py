"""Whether the leader may call its dead man's switch (`heartbeat.url`) now: pure, no I/O.

The heartbeat says "this pager pages", so it is sent only when every part of that holds: this
instance leads and its lease is current (renewed within the lease's length: a leader cut off from
the store, or stuck renewing, may already have been replaced), its scheduler runs its jobs on time
(the heartbeat job's own lateness is the measure, taken once the round has read the store: a
stuck or starved scheduler runs it late or never, a store that answers only after the bound makes
it late), and the oldest page not yet accepted by Slack is younger than `max_backlog` (a page Slack
keeps refusing stops the pings; a post or an edit it refuses does not, the pager still pages).
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
    oldest_undelivered_page: datetime | None,
    max_backlog: timedelta,
    lease_current: bool = True,
) -> HeartbeatVerdict:
    """`planned_at`: when this heartbeat run was due; `now` later than `lag_bound` after it (the
    store's answer included) means timers lag. `lease_current`: the lease was renewed within its
    length (always true where no lease is kept)."""
    if not leading:
        return HeartbeatVerdict(False, "not the leader")
    if not lease_current:
        return HeartbeatVerdict(
            False, "the lease has not been renewed within its length (the store is away, or another instance leads)"
        )
    if not scheduler_running:
        return HeartbeatVerdict(False, "the scheduler or the delivery loop is not running")
    lag = now - planned_at
    if lag > lag_bound:
        return HeartbeatVerdict(
            False, f"timers lag {lag.total_seconds():.1f}s (bound {lag_bound.total_seconds():.1f}s)"
        )
    if oldest_undelivered_page is not None and now - oldest_undelivered_page >= max_backlog:
        age = (now - oldest_undelivered_page).total_seconds()
        return HeartbeatVerdict(False, f"oldest undelivered page is {age:.0f}s old (max_backlog {max_backlog})")
    return HeartbeatVerdict(True, "")
