"""`incident-bot check-oncall [--days N]`: the readiness check for a team's CI, asking the Slack
sandbox through the real slack_sdk client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import default_config_text
from bot.sandbox.runner import BOT_TOKEN


def rotation(members: str) -> str:
    """A daily rotation (UTC) whose first shift began a day ago, at a handoff six hours from now's hour."""
    began = datetime.now(UTC) - timedelta(hours=6)
    start = (began - timedelta(days=1)).date().isoformat()
    return (
        default_config_text().replace("oncall_primary: [U0PRIMARY]", "oncall_primary: [schedule:primary]")
        + "schedules:\n"
        + f'  primary: {{timezone: UTC, rotation: daily, handoff: "{began:%H:%M}", start: {start}, members: [{members}]}}\n'
    )


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sandbox):
    def configure(text: str) -> None:
        path = tmp_path / "incident-bot.yaml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setenv("INCIDENT_BOT_CONFIG", str(path))

    monkeypatch.setenv("INCIDENT_BOT_DB", str(tmp_path / "incident-bot.db"))
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_API_URL", sandbox.api_url)
    return configure


def test_a_rotation_whose_only_member_is_deactivated_fails_naming_the_schedule_and_hours(environment, sandbox, capsys):
    environment(rotation("U0BOB"))
    sandbox.deactivate_user("U0BOB")

    assert main(["check-oncall", "--days", "3"]) == 1

    out = capsys.readouterr().out
    assert "over the next 3d" in out
    gap = next(line for line in out.splitlines() if "primary pages nobody" in line)
    assert "for 3d" in gap and "<@U0BOB> is deactivated in Slack" in gap
    assert "(UTC) –" in gap  # the hours, on the schedule's clock
    assert "<@U0BOB> is deactivated in Slack (named in schedules.primary)" in out
    assert "The role oncall_primary (under `people`) resolves to nobody: the primary rotation reaches nobody" in out
    assert sandbox.calls_to("users.info")


def test_a_sound_config_passes(environment, capsys):
    environment(rotation("U0ALICE, U0BOB"))
    assert main(["check-oncall"]) == 0
    assert "No problems" in capsys.readouterr().out


def test_an_email_that_finds_nobody_and_an_empty_user_group_are_problems(environment, sandbox, capsys):
    sandbox.add_usergroup("db-oncall", [])
    text = rotation("U0ALICE, U0BOB").replace(
        "support: [U0SUPPORT]", "support: [ghost@example.com]\n  dba: ['@db-oncall']"
    )
    environment(text)
    assert main(["check-oncall", "--days", "2"]) == 1
    out = capsys.readouterr().out
    assert "no active Slack user has the email `ghost@example.com`" in out
    assert "The role support (under `people`) resolves to nobody" in out
    assert "the Slack user group @db-oncall has nobody in it (in `people.dba`)" in out


def test_bad_days_and_a_bad_config_exit_2(environment, capsys):
    environment(rotation("U0ALICE"))
    assert main(["check-oncall", "--days", "0"]) == 2
    environment("channel: [oops]\n")
    assert main(["check-oncall"]) == 2
    assert "invalid config" in capsys.readouterr().err
