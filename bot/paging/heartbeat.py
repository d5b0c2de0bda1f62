"""The leader's dead man's switch: GET `heartbeat.url` every `heartbeat.every` while healthy.

Run as a job of the leader's scheduler (`Timers.start`), on the pool the escalation timers use, so
a standby, a stopped or a stuck scheduler (every timer thread busy) never pings. Each run reads the
oldest undelivered page from the store and asks `bot.domain.heartbeat` whether to ping (lease
current, the round on time once the store has answered, no page older than `max_backlog`); the
GET runs on a thread of its own with a short timeout, so a slow or dead monitor never holds a timer. A failed ping is logged and the next
round tries again; a ping still in flight makes the next round skip rather than pile up threads.
"""

from __future__ import annotations

import logging
import threading
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.domain.deliveries import URGENT_KINDS
from bot.domain.heartbeat import heartbeat_verdict
from bot.domain.policy import HeartbeatRules
from bot.store import Store

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0


class Heartbeat:
    def __init__(
        self,
        rules: HeartbeatRules,
        store: Store,
        clock: Callable[[], datetime],
        leading: Callable[[], bool],
        running: Callable[[], bool],
        lease_current: Callable[[], bool] = lambda: True,
    ) -> None:
        self.rules = rules
        self.store = store
        self.clock = clock
        self.leading = leading
        self.running = running
        self.lease_current = lease_current
        self.planned_at: datetime | None = None
        self._in_flight = threading.Lock()
        self.sent = 0
        self.skipped = 0

    def start(self) -> None:
        """The first run is due one period from now (the scheduler's interval job starts then)."""
        self.planned_at = self.clock() + self.rules.every

    def run(self) -> None:
        """One round: decide, maybe start a ping; never raises, never waits on the network."""
        began = self.clock()
        planned = self.planned_at or began
        # The next round is due one period after this one was due (the scheduler's interval grid).
        self.planned_at = planned + self.rules.every
        if self.planned_at <= began:  # a run far behind: the next one is judged from now
            self.planned_at = began + self.rules.every
        try:
            # Pages (and the ack-SLA alarm) only: a post or an edit Slack refuses does not stop the
            # pager from paging, and shows in /metrics' backlog instead.
            _, oldest = self.store.delivery_backlog(URGENT_KINDS)
        except Exception:  # noqa: BLE001 - the store being away is a reason not to ping
            log.warning("heartbeat not sent: the store did not answer", exc_info=True)
            self.skipped += 1
            return
        # Judged when the store has answered: a read that took longer than the bound (a store
        # going away, then back) makes this round late, like a scheduler that ran it late.
        now = self.clock()
        verdict = heartbeat_verdict(
            now,
            leading=self.leading(),
            scheduler_running=self.running(),
            planned_at=planned,
            lag_bound=max(self.rules.every, timedelta(seconds=1)),
            oldest_undelivered_page=oldest,
            max_backlog=self.rules.max_backlog,
            lease_current=self.lease_current(),
        )
        if not verdict.ping:
            log.warning("heartbeat not sent: %s", verdict.reason)
            self.skipped += 1
            return
        if not self._in_flight.acquire(blocking=False):
            log.warning("heartbeat not sent: the previous ping has not finished")
            return
        threading.Thread(target=self._ping, name="heartbeat", daemon=True).start()

    def _ping(self) -> None:
        try:
            timeout = min(PING_TIMEOUT_S, max(0.5, self.rules.every.total_seconds()))
            request = urllib.request.Request(self.rules.url, method="GET", headers={"User-Agent": "incident-bot"})
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - configured http(s) URL
                response.read(1024)
            self.sent += 1
        except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
            log.warning("heartbeat ping to the monitor failed (next round tries again): %s", exc)
        finally:
            self._in_flight.release()
