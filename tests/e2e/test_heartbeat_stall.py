"""The dead man's switch when the leader's scheduler stalls: every one of its worker threads taken
by a verify sample stuck on Google calls that never answer (the service's health endpoint, Cloud
Monitoring and Cloud Logging all hanging, as in a regional outage). Escalation timers would wait
behind them, so the pings must stop; they resume once Google answers again."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.sandbox.heartbeat import HeartbeatServer
from bot.sandbox.runner import SandboxedBot
from tests.e2e.test_rollback import COMMANDER, LEAD
from tests.e2e.test_verify import FAST

WATCHES = 10  # APScheduler's default pool: ten worker threads, one sample of each watch at a time
STALL_S = 3.0


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


@pytest.fixture
def monitor() -> Iterator[HeartbeatServer]:
    with HeartbeatServer() as server:
        assert isinstance(server, HeartbeatServer)
        yield server


def test_pings_stop_while_every_scheduler_thread_hangs_on_google_and_resume_when_it_answers(monitor):
    config = FAST.replace("  window: 4s", "  window: 5m") + (
        f'heartbeat: {{url: "{monitor.ping_url()}", every: 1s, max_backlog: 5m}}\n'
    )
    assert "window: 5m" in config and "every: 1s" in config
    with SandboxedBot(config_text=config, preset="healthy", rate_limits=False) as running:
        running.gcp.start_live()
        store = running.bot.store
        for n in range(1, WATCHES + 1):
            running.command(f"declare p2 Checkout down {n}", user=COMMANDER)
            room = running.slack.wait_for(lambda n=n: store.get(n) and store.get(n).war_room_id, timeout=10)
            reply = running.command("verify 5m", user=LEAD, channel=room)
            assert reply.text.startswith("Verifying"), reply.text
        assert wait_until(lambda: all(len(w.samples) >= 2 for w in store.watches()), timeout=20)
        healthy = time.time()
        assert wait_until(lambda: len(monitor.pings_since(healthy)) >= 2, timeout=10), monitor.pings

        for source in ("health", "monitoring", "logging"):
            running.gcp.hang(source)
        stalled = time.time()
        time.sleep(STALL_S)  # observing an absence: every sample is stuck for 5 s of probe plus 8 s of metrics
        # Each watch's next sample (due within a second) takes a thread; after that none pings.
        during = [round(t - stalled, 2) for t in monitor.pings_since(stalled)]
        assert all(t < 2.0 for t in during), during

        running.gcp.heal()
        healed = time.time()
        assert wait_until(lambda: len(monitor.pings_since(healed)) >= 3, timeout=20), (
            [round(t - stalled, 2) for t in monitor.pings_since(stalled)],
        )
        first = monitor.pings_since(healed)[0] - healed
        print(f"pings during the stall at {during}; first ping {first:.1f}s after Google answered")
