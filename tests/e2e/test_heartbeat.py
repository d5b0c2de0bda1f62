"""The dead man's switch end to end: a running bot GETs `heartbeat.url` (a sandbox monitor over
real HTTP) every `heartbeat.every` while healthy, stops while a page Slack keeps refusing is
older than `heartbeat.max_backlog`, and starts again once Slack accepts it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.sandbox.heartbeat import HeartbeatServer
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

SUPPORT = "U0SUPPORT"


@pytest.fixture
def monitor() -> Iterator[HeartbeatServer]:
    with HeartbeatServer() as server:
        assert isinstance(server, HeartbeatServer)
        yield server


@pytest.fixture
def beating_bot(monitor: HeartbeatServer) -> Iterator[SandboxedBot]:
    config = FAST_CONFIG + f'heartbeat: {{url: "{monitor.ping_url()}", every: 1s, max_backlog: 2s}}\n'
    with SandboxedBot(config_text=config) as running:
        yield running


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def test_pings_arrive_while_healthy_stop_while_slack_refuses_a_page_and_resume(beating_bot, monitor):
    started = time.time()
    assert wait_until(lambda: len(monitor.pings_since(started)) >= 3, timeout=6), monitor.pings
    gaps = [b - a for a, b in zip(monitor.pings, monitor.pings[1:], strict=False)]
    assert all(0.5 < gap < 1.6 for gap in gaps), gaps  # every 1s

    beating_bot.bot.deliveries.retry_base = timedelta(milliseconds=200)
    beating_bot.slack.fail("conversations.open", status=500, times=100_000)
    beating_bot.slack.fail("chat.postMessage", status=500, times=100_000)
    beating_bot.command("declare p3 Export button broken")
    declared = time.time()

    # The page is older than 2s from declared+2s on: pings stop (one in flight may still land).
    time.sleep(4)  # observing an absence: 2s of backlog allowance, plus a round, plus slack
    silent_from = declared + 3.2
    assert monitor.pings_since(silent_from) == [], [t - declared for t in monitor.pings_since(declared)]
    assert [d.status for d in beating_bot.bot.store.deliveries(1, kind="page")] != ["sent"]

    beating_bot.slack.clear_faults()
    healed = time.time()
    beating_bot.slack.wait_for_dm(SUPPORT, "You are paged", with_button="incident_ack", timeout=15)
    assert wait_until(lambda: len(monitor.pings_since(healed)) >= 2, timeout=15), monitor.pings


def test_a_failing_monitor_is_tried_again_and_never_holds_the_timers(beating_bot, monitor):
    monitor.hang("ping")  # the first pings never get an answer (client timeout)
    beating_bot.command("declare p3 Export button broken")
    # Paging goes on while the monitor hangs.
    beating_bot.slack.wait_for_dm(SUPPORT, "You are paged", with_button="incident_ack")
    monitor.heal()
    healed = time.time()
    assert wait_until(lambda: len(monitor.pings_since(healed)) >= 2, timeout=15), monitor.pings


def test_an_edit_slack_keeps_refusing_does_not_stop_the_pings_only_a_page_does(beating_bot, monitor):
    """The heartbeat says "the pager pages": the backlog it looks at is of pages only. An edit
    Slack refuses for longer than max_backlog (here every chat.update) waits in /metrics' backlog
    and leaves the pings alone."""
    bot = beating_bot.bot
    bot.deliveries.retry_base = timedelta(milliseconds=200)
    beating_bot.slack.fail("chat.update", status=500, times=100_000)
    beating_bot.command("declare p1 Checkout down", user="U0ALICE")
    beating_bot.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")

    def oldest_unsent_edit_age() -> float:
        _, oldest = bot.store.delivery_backlog()
        return (bot.ctx.now() - oldest).total_seconds() if oldest else 0.0

    assert wait_until(lambda: oldest_unsent_edit_age() > 3, timeout=15), bot.store.deliveries(1)
    aged = time.time()
    unsent = {d.kind for d in bot.store.deliveries(1) if d.status in ("pending", "sending")}
    assert unsent and not unsent & {"page", "sla_breach"}, unsent
    assert bot.store.delivery_backlog(["page", "sla_breach"]) == (0, None)
    # Older than max_backlog (2s), and the pings go on.
    assert wait_until(lambda: len(monitor.pings_since(aged)) >= 2, timeout=5), unsent
