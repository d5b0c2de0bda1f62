"""Forms open while slow work fills the work pool: Slack honours a trigger_id for 3 s only.

Twenty diagnoses against a Cloud Logging that takes 3 s a call keep every work thread busy for
several seconds. A form asked for meanwhile must still open: the bot calls views.open before it
answers the request, so the view is open by the time the request returns, whatever is queued.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.app.runtime import WORK_THREADS
from bot.sandbox.runner import SandboxedBot
from bot.slack import ids

DIAGNOSES = WORK_THREADS + 4


@pytest.fixture
def busy_bot() -> Iterator[SandboxedBot]:
    with SandboxedBot() as running:
        running.command("declare p2 Search is slow", user="U0ALICE")
        running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
        running.gcp.delay("logging", 3.0)
        for _ in range(DIAGNOSES):
            assert "Diagnosing" in running.command("diagnose INC-1", user="U0ALICE").text
        yield running
        running.gcp.heal()
        assert not running.slack.refusals()


def opened(running: SandboxedBot) -> list:
    return [c for c in running.slack.calls_to("views.open") if c.ok]


def test_the_update_form_opens_before_the_command_returns(busy_bot):
    room = busy_bot.bot.store.get(1).war_room_id

    reply = busy_bot.command("update", user="U0ALICE", channel=room)

    assert reply.status == 200
    assert [c.params.get("trigger_id") for c in opened(busy_bot)] == [reply.trigger_id]
    assert busy_bot.slack.views(ids.UPDATE_MODAL)
    assert not [c for c in busy_bot.slack.calls_to("views.open") if not c.ok]


def test_the_update_button_opens_its_form_before_the_click_returns(busy_bot):
    announcement = busy_bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·", with_button=ids.POST_UPDATE)

    click = busy_bot.click(announcement.button(ids.POST_UPDATE), user="U0ALICE", channel="C0INCIDENT")

    assert click.status == 200
    assert [c.params.get("trigger_id") for c in opened(busy_bot)] == [click.trigger_id]


def test_the_declare_form_opens_before_the_command_returns(busy_bot):
    reply = busy_bot.command("declare", user="U0ALICE")

    assert reply.status == 200
    assert [c.params.get("trigger_id") for c in opened(busy_bot)] == [reply.trigger_id]
    assert busy_bot.slack.views(ids.DECLARE_MODAL)


def test_a_form_slack_will_not_open_gets_a_clear_reply(bot):
    bot.command("declare p2 Search is slow", user="U0ALICE")
    bot.slack.error("views.open", "expired_trigger_id")

    reply = bot.command("update INC-1", user="U0ALICE")

    assert "Slack would not open the form (`expired_trigger_id`)" in reply.text
    assert "/incident update" in reply.text
    assert bot.bot.store.get(1).last_update_at is None
