"""The decision "ping the dead man's switch or not", with an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.heartbeat import heartbeat_verdict

NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def verdict(**overrides):
    args = {
        "leading": True,
        "scheduler_running": True,
        "planned_at": NOW - 0.1 * S,
        "lag_bound": S,
        "oldest_undelivered_page": None,
        "max_backlog": 2 * S,
    }
    args.update(overrides)
    return heartbeat_verdict(NOW, **args)


def test_a_healthy_leader_pings():
    assert verdict().ping
    assert verdict(oldest_undelivered_page=NOW - 1.9 * S).ping


def test_a_standby_never_pings():
    v = verdict(leading=False)
    assert not v.ping and "leader" in v.reason


def test_a_stopped_scheduler_does_not_ping():
    assert not verdict(scheduler_running=False).ping


def test_timers_lagging_past_the_bound_stop_the_ping():
    assert verdict(planned_at=NOW - S).ping
    v = verdict(planned_at=NOW - 1.5 * S)
    assert not v.ping and "lag" in v.reason


def test_an_undelivered_page_older_than_max_backlog_stops_the_ping():
    v = verdict(oldest_undelivered_page=NOW - 2 * S)
    assert not v.ping and "undelivered page" in v.reason


def test_a_leader_whose_lease_is_not_current_does_not_ping():
    assert verdict(lease_current=True).ping
    v = verdict(lease_current=False)
    assert not v.ping and "lease" in v.reason
