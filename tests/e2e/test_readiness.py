"""The daily readiness check in the running bot: the leader posts it once at `oncall_checks.at`,
and a restart the same day does not post it again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.config import default_config_text
from bot.sandbox.runner import SandboxedBot, manifest_scopes
from bot.sandbox.slack import SlackSandbox


def config(at: datetime) -> str:
    """A rotation whose only member (Bob) will be deactivated; the check due two minutes ago."""
    began = datetime.now(UTC) - timedelta(hours=6)
    start = (began - timedelta(days=1)).date().isoformat()
    return (
        default_config_text()
        + "schedules:\n"
        + f'  primary: {{timezone: UTC, rotation: daily, handoff: "{began:%H:%M}", start: {start}, members: [U0BOB]}}\n'
        + f'oncall_checks: {{at: "{at:%H:%M}", timezone: UTC, horizon: 2d}}\n'
    )


def posts(slack: SlackSandbox) -> list:
    return [m for m in slack.messages_in("C0INCIDENT") if "On-call readiness" in m.text]


def checked_for_tomorrow(running: SandboxedBot) -> bool:
    """The leader's check job has run and placed itself at the next day's hour."""
    job = running.bot.timers.scheduler.job_for("oncall-checks")
    return job is not None and job.next_run_time > datetime.now(UTC) + timedelta(hours=12)


def test_the_daily_check_posts_once_and_a_restart_does_not_post_it_again(tmp_path):
    slack = SlackSandbox(scopes=manifest_scopes())
    slack.deactivate_user("U0BOB")
    text = config(datetime.now(UTC) - timedelta(minutes=2))
    db = str(tmp_path / "bot.db")
    try:
        with SandboxedBot(config_text=text, db_path=db, slack=slack) as running:
            [post] = slack.wait_for(lambda: posts(slack) or None, timeout=10, what="the readiness post")
            assert "*primary* pages nobody for 2d" in post.text
            assert "<@U0BOB> is deactivated in Slack" in post.text
            slack.wait_for(lambda: checked_for_tomorrow(running), what="the next run placed tomorrow")
        with SandboxedBot(config_text=text, db_path=db, slack=slack) as again:
            again.slack.wait_for(lambda: checked_for_tomorrow(again), what="the next run placed tomorrow")
            assert len(posts(slack)) == 1
            assert not slack.refusals(), slack.refusals()
    finally:
        slack.stop()
