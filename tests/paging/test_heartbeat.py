"""`Heartbeat` rounds with an injected clock and a stub store: a standby never pings, the store
being away or answering late skips the round, a lagging run skips it, a lease not renewed within
its length skips it, and only pages count as backlog."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bot.domain.policy import HeartbeatRules
from bot.paging.heartbeat import Heartbeat
from bot.sandbox.heartbeat import HeartbeatServer

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Backlog:
    def __init__(self, clock: Clock | None = None) -> None:
        self.oldest: datetime | None = None
        self.down = False
        self.clock = clock
        self.answer_after = timedelta(0)  # how long a read takes (the injected clock moves on)
        self.asked: list[frozenset[str] | None] = []

    def delivery_backlog(self, kinds=None):
        self.asked.append(None if kinds is None else frozenset(kinds))
        if self.clock is not None:
            self.clock.now += self.answer_after
        if self.down:
            raise ConnectionError("store away")
        return (0 if self.oldest is None else 1), self.oldest


def beat(url: str, leading: bool, clock: Clock, store: Backlog, lease_current=lambda: True) -> Heartbeat:
    rules = HeartbeatRules(url=url, every=timedelta(seconds=1), max_backlog=timedelta(seconds=2))
    return Heartbeat(
        rules,
        store,  # type: ignore[arg-type]
        clock,
        leading=lambda: leading,
        running=lambda: True,
        lease_current=lease_current,
    )


def wait_sent(hb: Heartbeat, n: int) -> None:
    deadline = time.monotonic() + 5
    while hb.sent < n and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_standby_never_pings_and_the_leader_does():
    with HeartbeatServer() as monitor:
        assert isinstance(monitor, HeartbeatServer)
        clock, store = Clock(), Backlog()
        standby = beat(monitor.ping_url(), False, clock, store)
        leader = beat(monitor.ping_url(), True, clock, store)
        standby.start()
        leader.start()
        for _ in range(3):
            clock.now += timedelta(seconds=1)
            standby.run()
        assert standby.skipped == 3
        clock.now = T0
        leader.start()
        clock.now += timedelta(seconds=1)
        leader.run()
        wait_sent(leader, 1)
        assert len(monitor.pings) == 1 and leader.sent == 1


def test_the_store_away_or_a_late_run_or_an_old_backlog_skips_the_round():
    clock, store = Clock(), Backlog()
    hb = beat("http://127.0.0.1:9/ping/x", True, clock, store)
    hb.start()
    store.down = True
    clock.now += timedelta(seconds=1)
    hb.run()
    assert hb.skipped == 1
    store.down = False
    clock.now += timedelta(seconds=3)  # this run was due at T0+2s: 2s late
    hb.run()
    assert hb.skipped == 2
    store.oldest = clock.now - timedelta(seconds=5)
    clock.now = hb.planned_at or clock.now
    hb.run()
    assert hb.skipped == 3


def test_a_store_answering_later_than_the_bound_makes_the_round_late():
    clock = Clock()
    store = Backlog(clock)
    with HeartbeatServer() as monitor:
        assert isinstance(monitor, HeartbeatServer)
        hb = beat(monitor.ping_url(), True, clock, store)
        hb.start()
        clock.now += timedelta(seconds=1)  # on time, but the read takes 5 s
        store.answer_after = timedelta(seconds=5)
        hb.run()
        assert hb.skipped == 1 and hb.sent == 0
        store.answer_after = timedelta(milliseconds=100)
        clock.now = hb.planned_at or clock.now
        hb.run()
        wait_sent(hb, 1)
        assert hb.sent == 1 and len(monitor.pings) == 1


def test_a_leader_whose_lease_renewals_hang_does_not_ping():
    clock, store = Clock(), Backlog()
    current = {"lease": False}
    with HeartbeatServer() as monitor:
        assert isinstance(monitor, HeartbeatServer)
        hb = beat(monitor.ping_url(), True, clock, store, lease_current=lambda: current["lease"])
        hb.start()
        clock.now += timedelta(seconds=1)
        hb.run()
        assert hb.skipped == 1
        current["lease"] = True
        clock.now = hb.planned_at or clock.now
        hb.run()
        wait_sent(hb, 1)
        assert hb.sent == 1


def test_the_backlog_read_is_of_pages_only():
    clock, store = Clock(), Backlog()
    hb = beat("http://127.0.0.1:9/ping/x", True, clock, store)
    hb.start()
    clock.now += timedelta(seconds=1)
    hb.run()
    assert store.asked == [frozenset({"page", "sla_breach"})]
