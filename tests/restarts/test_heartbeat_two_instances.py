"""The dead man's switch with two `serve` processes on one PostgreSQL: one ping stream (the
leader's), none while nobody leads, and the new leader's once it takes the lease.

Checked against builds broken on purpose: with the heartbeat on a thread of every instance
(standbys ping) the first window sees 10 pings in 5 s; with the leader's heartbeat on a thread
that outlives its lease, the old leader pings again after it wakes (8 in the last window)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from bot.sandbox.heartbeat import HeartbeatServer
from bot.sandbox.slack import SlackSandbox
from tests.restarts.test_two_instances import CONFIG, LEASE_S, Instance


def test_only_the_leader_pings_and_the_new_leader_takes_over(tmp_path: Path, pg_url: str) -> None:
    with SlackSandbox() as slack, HeartbeatServer() as monitor:
        assert isinstance(monitor, HeartbeatServer)
        config = CONFIG + f'heartbeat: {{url: "{monitor.ping_url()}", every: 1s, max_backlog: 30s}}\n'
        a = Instance(tmp_path, slack, "instance-a", pg_url)
        b = Instance(tmp_path, slack, "instance-b", pg_url)
        for instance in (a, b):
            Path(instance.env["INCIDENT_BOT_CONFIG"]).write_text(config, encoding="utf-8")
        try:
            a.start()
            b.start()
            assert a.health()["leader"] is True and b.health()["leader"] is False
            t0 = time.time()
            time.sleep(5)  # observing a rate: one leader pings ~5 times, two would ~10
            both = monitor.pings_since(t0)
            assert 3 <= len(both) <= 6, [round(t - t0, 2) for t in both]

            a.signal(signal.SIGSTOP)  # no leader until b takes the lease
            stopped = time.time()
            b.wait_until(lambda h: h.get("leader") is True, timeout=LEASE_S + 10)
            took = time.time()
            time.sleep(4)
            after = monitor.pings_since(took)
            assert 2 <= len(after) <= 5, [round(t - took, 2) for t in after]
            # while nobody led (a frozen, b not yet leading) nothing pinged, bar one in flight
            assert len([t for t in monitor.pings_since(stopped + 1.2) if t < took]) == 0

            a.signal(signal.SIGCONT)  # a wakes having lost the lease: still one stream
            woke = time.time()
            time.sleep(5)
            resumed = monitor.pings_since(woke + 1)
            assert len(resumed) <= 5, [round(t - woke, 2) for t in resumed]
        finally:
            a.stop()
            b.stop()
