"""The catch-up end to end: `/incident catchup` after a scripted incident, and the greeting a
person joining the war room gets (once), over signed HTTP against the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.runner import SandboxedBot
from bot.sandbox.slack.constants import BOT_USER_ID

COMMANDER = "U0ALICE"
LEAD = "U0LEAD"
LATE = "U0BOB"  # woken second: joins the war room after all of it


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot(preset="bad_deploy") as world:
        yield world
        assert not world.slack.refusals(), f"Slack refused: {world.slack.refusals()}"


def scripted(running: SandboxedBot) -> str:
    """Declare, ack, two updates, diagnose, a rollback proposed: the war room's id."""
    running.command("declare p1 Checkout returns 500", user=COMMANDER)
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    running.command("ack", user="U0PRIMARY", channel=room)
    running.command("update Errors started with the 10:02 deploy", user=COMMANDER, channel=room)
    running.command("update Rolling back the 10:02 deploy", user=COMMANDER, channel=room)
    running.command("diagnose", user=LEAD, channel=room)
    running.slack.wait_for(lambda: any(e.kind == "diagnose" for e in running.bot.store.timeline(1)), timeout=15)
    running.command("rollback", user=LEAD, channel=room)
    running.slack.wait_for_message(room, "proposed by", with_button="rollback_confirm")
    running.command("followup Alert on the deploy's error rate", user=COMMANDER, channel=room)
    return room


def test_catchup_tells_the_story_so_far_only_to_the_asker(running):
    room = scripted(running)
    posts_before = len(running.slack.calls_to("chat.postMessage"))
    history_before = len(running.slack.calls_to("conversations.history"))

    reply = running.command("catchup INC-1", user=LATE, channel="C0INCIDENT")

    text = reply.text
    assert reply.body.get("response_type") == "ephemeral"
    assert "INC-1 · P1 Critical · investigating" in text and "Checkout returns 500" in text
    assert f"Commander <@{COMMANDER}>" in text
    assert "Acknowledged by <@U0PRIMARY>" in text
    # The last two updates, newest first; the diagnosis verdict; the proposed rollback.
    assert text.index("Rolling back the 10:02 deploy") < text.index("Errors started with the 10:02 deploy")
    assert "likely scenario 1A" in text
    revision = running.gcp.world.previous_revision
    assert f"roll back to {revision}" in text and "waiting for a confirm" in text
    assert "Alert on the deploy's error rate" in text
    assert "*Next*: the commander is reminded to post an update in" in text
    # Built from the store only: no Slack read, no post.
    assert len(running.slack.calls_to("chat.postMessage")) == posts_before
    assert len(running.slack.calls_to("conversations.history")) == history_before
    assert room


def test_catchup_names_what_is_missing_before_anything_happened(running):
    running.command("declare p2 Slow search", user=COMMANDER)
    running.slack.wait_for_dm("U0PRIMARY", with_button="incident_ack")
    text = running.command("catchup", user=LATE).text
    assert "Not acknowledged yet" in text
    assert "No update has been posted yet." in text
    assert "*Diagnosis*: not run yet." in text
    assert "*Next*: escalation pages oncall_secondary in" in text


def test_catchup_of_an_incident_that_does_not_exist_changes_nothing(running):
    reply = running.command("catchup INC-9", user=LATE)
    assert "INC-9 does not exist" in reply.text
    assert running.bot.store.get(9) is None


def test_a_join_is_greeted_once_and_the_bots_own_joins_not_at_all(running):
    room = scripted(running)
    # The set-up invited the commander itself (they read the briefing), and the bot made the room.
    running.platform.member_joined(room, COMMANDER, inviter=BOT_USER_ID)
    running.platform.member_joined(room, BOT_USER_ID)

    result = running.platform.member_joined(room, LATE, inviter=COMMANDER)
    assert result.status == 200

    greeting = running.slack.wait_for_ephemeral(LATE, "Welcome to the INC-1 war room")
    assert greeting.channel == room
    assert "Rolling back the 10:02 deploy" in greeting.text and "likely scenario 1A" in greeting.text
    # Slack retries the event, and the person leaves and joins again: no second greeting.
    running.platform.member_joined(room, LATE, event_id=result.payload["event_id"], retry_num=1)
    running.platform.member_joined(room, LATE)
    running.command("note checking that the events were handled", user=COMMANDER, channel=room)
    running.slack.wait_for(lambda: running.bot.store.greeted(1).count(LATE) == 1)
    # A last event handled after the ones above: anything they would post has been posted.
    running.platform.member_joined(room, "U0SUPPORT")
    running.slack.wait_for_ephemeral("U0SUPPORT", "Welcome to the INC-1 war room")

    greetings = [e for e in running.slack.ephemerals() if "Welcome to the INC-1" in e.text]
    assert [e.user for e in greetings].count(LATE) == 1
    assert not [e for e in greetings if e.user in {COMMANDER, BOT_USER_ID}]


def test_a_join_elsewhere_is_not_greeted(running):
    running.command("declare p1 Checkout returns 500", user=COMMANDER)
    running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    running.platform.member_joined("C0GENERAL", LATE)
    running.platform.member_joined("C0INCIDENT", LATE)
    room = running.bot.store.get(1).war_room_id
    running.platform.member_joined(room, "U0SUPPORT")
    running.slack.wait_for_ephemeral("U0SUPPORT", "Welcome to the INC-1 war room")
    assert not [e for e in running.slack.ephemerals_to(LATE) if "Welcome" in e.text]
