"""The App Home tab end to end: `app_home_opened` over signed HTTP, `views.publish` into the
sandbox, and the Acknowledge button pressed on the tab."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import default_config_text
from bot.sandbox.runner import SandboxedBot

COMMANDER = "U0ALICE"
PRIMARY = "U0PRIMARY"


def config() -> str:
    """The runbook's config with a daily rotation (Alice, then Bob) whose shift began six hours ago:
    Alice is on call now, Bob next."""
    began = datetime.now(UTC) - timedelta(hours=6)
    start = began.date().isoformat()
    schedule = (
        "schedules:\n"
        f'  primary: {{timezone: UTC, rotation: daily, handoff: "{began:%H:%M}", start: {start},'
        " members: [U0ALICE, U0BOB]}\n"
    )
    return default_config_text() + schedule


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=config()) as world:
        yield world
        assert not world.slack.refusals(), f"Slack refused: {world.slack.refusals()}"


def published(running: SandboxedBot, user: str, contains: str) -> dict:
    def found():
        view = running.slack.home_view(user)
        return view if view is not None and contains in str(view["blocks"]) else None

    return running.slack.wait_for(found, what=f"{user}'s Home tab showing {contains!r}")


def test_opening_the_home_tab_publishes_roles_shifts_and_pages_waiting(running):
    running.command("declare p1 Checkout returns 500", user=COMMANDER)
    running.slack.wait_for_dm(PRIMARY, with_button="incident_ack")
    assert running.slack.home_view(COMMANDER) is None  # nothing is published to someone who never opened it

    result = running.platform.home_opened(COMMANDER)
    assert result.status == 200
    view = published(running, COMMANDER, "INC-1")
    text = str(view["blocks"])
    assert view["type"] == "home"
    assert "you are *commander*" in text
    assert "*now*, until" in text and "*primary*" in text
    assert "waiting for your ack" not in text  # Alice was not paged
    assert not running.slack.calls_to("views.publish")[0].params.get("hash")

    running.platform.home_opened(PRIMARY)
    view = published(running, PRIMARY, "waiting for your ack")
    buttons = [b["accessory"] for b in view["blocks"] if isinstance(b.get("accessory"), dict)]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("incident_ack", "1")]
    assert "You hold no role in an open incident." in str(view["blocks"])
    assert running.slack.home_view("U0BOB") is None


def test_acknowledge_on_the_home_tab_is_the_page_s_ack_and_refreshes_the_tab(running):
    running.command("declare p1 Checkout returns 500", user=COMMANDER)
    page = running.slack.wait_for_dm(PRIMARY, with_button="incident_ack")
    running.platform.home_opened(PRIMARY)
    published(running, PRIMARY, "waiting for your ack")

    click = running.platform.click_home(PRIMARY, "incident_ack", "1")
    assert click.status == 200
    running.slack.wait_for(lambda: running.bot.store.get(1).acknowledged_by == PRIMARY)
    view = published(running, PRIMARY, "You acknowledged INC-1")
    assert "waiting for your ack" not in str(view["blocks"])
    # The same ack as the page's: the page DM loses its button.
    running.slack.wait_for(
        lambda: not next(m for m in running.slack.dms_to(PRIMARY) if m.ts == page.ts).buttons(), timeout=10
    )


def test_the_messages_tab_publishes_nothing(running):
    running.platform.event({"type": "app_home_opened", "user": COMMANDER, "channel": "D0ALICE", "tab": "messages"})
    running.platform.home_opened("U0BOB")
    published(running, "U0BOB", "Your on-call shifts")
    assert running.slack.home_view(COMMANDER) is None


def test_the_commander_who_is_also_paged_sees_both_the_incident_and_its_acknowledge_button(running):
    running.command("declare p1 Checkout returns 500", user=PRIMARY)  # the declarer commands, and is on call
    running.slack.wait_for_dm(PRIMARY, with_button="incident_ack")
    running.platform.home_opened(PRIMARY)
    view = published(running, PRIMARY, "waiting for your ack")
    text = str(view["blocks"])
    assert "*INC-1*" in text and "you are *commander*" in text
    assert [b["accessory"]["action_id"] for b in view["blocks"] if isinstance(b.get("accessory"), dict)] == [
        "incident_ack"
    ]
