"""The dead man's switch when the leader's scheduler stalls, and when it only seems to.

Verify samples stuck on Google calls that never answer (the service's health endpoint, Cloud
Monitoring and Cloud Logging all hanging, as in a regional outage) hold threads of the pool for
placed work only: the escalation timers keep their own, so the pings go on. When the timers' own
threads are all stuck, escalations would wait, so the pings stop; they resume once freed."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import pytest

from bot.paging.timers import JOB_THREADS, TIMER_THREADS
from bot.sandbox.heartbeat import HeartbeatServer
from bot.sandbox.runner import SandboxedBot
from tests.e2e.test_rollback import COMMANDER, LEAD
from tests.e2e.test_verify import FAST

WATCHES = JOB_THREADS + 2  # more stuck samples than the placed-work pool has threads
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


def heartbeat_config(monitor: HeartbeatServer) -> str:
    config = FAST.replace("  window: 4s", "  window: 5m") + (
        f'heartbeat: {{url: "{monitor.ping_url()}", every: 1s, max_backlog: 5m}}\n'
    )
    assert "window: 5m" in config and "every: 1s" in config
    return config


def test_pings_go_on_while_verify_watches_hang_on_google(monitor):
    with SandboxedBot(config_text=heartbeat_config(monitor), preset="healthy", rate_limits=False) as running:
        running.gcp.start_live()
        store = running.bot.store
        for n in range(1, WATCHES + 1):
            running.command(f"declare p2 Checkout down {n}", user=COMMANDER)
            room = running.slack.wait_for(lambda n=n: store.get(n) and store.get(n).war_room_id)
            reply = running.command("verify 5m", user=LEAD, channel=room)
            assert reply.text.startswith("Verifying"), reply.text
        assert wait_until(lambda: all(len(w.samples) >= 2 for w in store.watches()), timeout=30)

        for source in ("health", "monitoring", "logging"):
            running.gcp.hang(source)
        stalled = time.time()
        # Every watch's next sample (due within a second) is stuck on Google: the placed-work pool
        # is full, with samples queued behind it.
        assert wait_until(lambda: len(stuck_samples(running)) >= JOB_THREADS, timeout=15)
        pings = monitor.pings_since(stalled)
        time.sleep(STALL_S)  # while the samples stay stuck (5 s of probe plus 8 s of metrics each)
        during = [round(t - stalled, 2) for t in monitor.pings_since(stalled)]
        assert len(stuck_samples(running)) >= JOB_THREADS, "the samples got unstuck: nothing was tested"
        # The timers' rounds run on time: a ping every second, as before the stall.
        assert len(during) >= len(pings) + STALL_S - 1, during
        running.gcp.heal()
        print(f"pings while every placed-work thread was stuck on Google: {during}")


def stuck_samples(running: SandboxedBot) -> list[str]:
    """Threads of the placed-work pool inside a verify sample (a Google call that does not answer)."""
    frames = sys._current_frames()
    return [
        t.name
        for t in threading.enumerate()
        if t.ident in frames and any(f.f_code.co_name == "_take" for f in _stack(frames[t.ident]))
    ]


def _stack(frame):  # type: ignore[no-untyped-def]
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_pings_stop_while_every_timer_thread_is_stuck_and_resume_when_freed(monitor):
    """What holds the timers' threads does not matter to the switch (here, jobs of the test's own
    that wait): a round that cannot run says nothing."""
    with SandboxedBot(config_text=heartbeat_config(monitor), preset="healthy", rate_limits=False) as running:
        healthy = time.time()
        assert wait_until(lambda: len(monitor.pings_since(healthy)) >= 2, timeout=15), monitor.pings
        release = threading.Event()
        holding: list[int] = []

        def hold(n: int) -> None:
            holding.append(n)
            release.wait(60)

        scheduler = running.bot.timers.scheduler
        try:
            for n in range(TIMER_THREADS):
                scheduler.add_job(hold, args=[n], id=f"stuck-{n}", executor="default")
            assert wait_until(lambda: len(holding) == TIMER_THREADS, timeout=10)
            stalled = time.time()
            time.sleep(STALL_S)  # observing an absence
            during = [round(t - stalled, 2) for t in monitor.pings_since(stalled)]
            assert all(t < 1.5 for t in during), during  # a round already under way may finish
        finally:
            release.set()
        freed = time.time()
        assert wait_until(lambda: len(monitor.pings_since(freed)) >= 3, timeout=20), monitor.pings_since(stalled)
        first = monitor.pings_since(freed)[0] - freed
        print(f"pings while stuck at {during}; first ping {first:.1f}s after the threads were freed")
