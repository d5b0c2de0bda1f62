"""The daily readiness check with an injected clock: the real store, the real slack_sdk client
against the Slack sandbox, days passing in an instant."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot import config as config_module
from bot.config import default_config_text
from bot.incident.announcer import Announcer
from bot.oncall.directory import Directory
from bot.oncall.readiness import GRACE, DailyCheck
from bot.sandbox.runner import BOT_TOKEN
from bot.sandbox.slack import SlackSandbox
from bot.slack.gateway import SlackGateway, make_client
from bot.store import Store

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin
CONFIG = (
    default_config_text().replace("oncall_primary: [U0PRIMARY]", "oncall_primary: [schedule:primary]")
    + "schedules:\n"
    + '  primary: {timezone: Europe/Berlin, rotation: daily, handoff: "09:00", start: 2026-12-01, members: [U0ALICE, U0BOB]}\n'
    + 'oncall_checks: {at: "09:00", timezone: Europe/Berlin, horizon: 3d}\n'
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(tmp_path) -> Iterator[tuple[DailyCheck, SlackSandbox, Clock, Store]]:
    config = config_module.parse(CONFIG, "t")
    assert config.oncall_checks is not None
    clock = Clock(T0)
    with SlackSandbox() as slack:
        store = Store(str(tmp_path / "bot.db"))
        gateway = SlackGateway(make_client(BOT_TOKEN, slack.api_url))
        announcer = Announcer(config, store, gateway, clock)
        directory = Directory(config, gateway, store, clock)
        yield DailyCheck(config, config.oncall_checks, store, gateway, announcer, directory, clock), slack, clock, store
        store.close()
        assert not slack.refusals(), slack.refusals()


def readiness_posts(slack: SlackSandbox) -> list[str]:
    return [m.text for m in slack.messages_in("C0INCIDENT") if "On-call readiness" in m.text]


def test_it_runs_at_its_hour_in_its_zone_posts_once_and_again_only_when_a_problem_changes(world):
    check, slack, clock, store = world
    slack.deactivate_user("U0BOB")

    assert check.run() == T0 + timedelta(days=1)  # 09:00 Berlin is due now; the next run is tomorrow
    [first] = readiness_posts(slack)
    assert "*primary* pages nobody" in first and "<@U0BOB> is deactivated in Slack" in first

    # The same day again (an early or repeated run): nothing.
    clock.now = T0 + timedelta(hours=2)
    assert check.run() == T0 + timedelta(days=1)
    # The next day, nothing has changed: no post, though the check ran.
    clock.now = T0 + timedelta(days=1)
    check.run()
    assert store.oncall_check_claimed("2026-12-08")
    assert len(readiness_posts(slack)) == 1

    # A new problem: only it is posted, the old one counted as still standing.
    slack.deactivate_user("U0ALICE")
    clock.now = T0 + timedelta(days=2)
    check.run()
    posts = readiness_posts(slack)
    assert len(posts) == 2
    assert "<@U0ALICE> is deactivated in Slack" in posts[1] and "problem(s) reported before still stand" in posts[1]
    assert "(named in schedules.primary)" in posts[1]


def test_everything_fine_posts_nothing(world):
    check, slack, clock, store = world
    check.run()
    assert store.oncall_check_claimed("2026-12-07")
    assert readiness_posts(slack) == []


def test_a_run_missed_by_more_than_the_grace_is_skipped_and_a_post_slack_refused_is_retried(world):
    check, slack, clock, store = world
    slack.deactivate_user("U0BOB")
    clock.now = T0 + GRACE + timedelta(minutes=1)
    check.run()
    assert not store.oncall_check_claimed("2026-12-07")

    clock.now = T0 + timedelta(days=1)
    slack.error("chat.postMessage", "fatal_error", times=1)
    retry_at = check.run()
    assert retry_at == clock.now + timedelta(seconds=30)
    assert readiness_posts(slack) == []
    clock.now = retry_at
    check.run()
    assert len(readiness_posts(slack)) == 1
