"""An alert group firing again soon after its incident was resolved (`alerts.reopen_within`):
over real HTTP, Slack's rate limits on. It opens nothing and pages nobody; it posts one message
in the old incident, which later re-fires edit, with a Reopen button that reopens it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.monitoring import alertmanager_alert, alertmanager_notification, send
from bot.sandbox.runner import ALERT_TOKEN, SandboxedBot
from tests.e2e.test_alerts import ALERTS_CONFIG, ANNOUNCE, PRIMARY, am_url, cm_url, current, error_rate

REFIRE = "is firing again"


def config(reopen_within: str) -> str:
    return ALERTS_CONFIG.replace("alerts:\n", f"alerts:\n  reopen_within: {reopen_within}\n", 1)


@pytest.fixture
def refire_bot() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=config("1h")) as running:
        yield running
        assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"


def flap(bot: SandboxedBot, episode: int, state: str = "open"):
    """Cloud Monitoring opens a new incident (a new `incident_id`) each time the policy fires."""
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    payload = error_rate(state=state, started=started)
    payload["incident"]["incident_id"] = f"0.flap{episode}"
    return send(cm_url(bot), payload, token=ALERT_TOKEN)


def declared_and_resolved(bot: SandboxedBot) -> str:
    """INC-1 declared by its alert, the alert closed, INC-1 resolved; its war room's id."""
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    assert send(cm_url(bot), error_rate(started=started), token=ALERT_TOKEN).status == 202
    bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    room = bot.slack.wait_for(lambda: bot.bot.store.get(1).war_room_id)
    send(cm_url(bot), error_rate("closed", started=started), token=ALERT_TOKEN)
    bot.slack.wait_for(lambda: bot.bot.store.alerts_of(1)[0].close_noted)
    assert "resolved" in bot.command("resolve INC-1 Rolled back", user=PRIMARY).text
    bot.slack.wait_for(lambda: not bot.bot.store.get(1).is_open)
    return room


def refire_posts(bot: SandboxedBot) -> list:
    return [c for c in bot.slack.calls_to("chat.postMessage") if REFIRE in str(c.params.get("text"))]


def pages(bot: SandboxedBot) -> int:
    return sum(len(bot.slack.dms_to(u)) for u in ("U0PRIMARY", "U0SECOND", "U0CEO", "U0LEAD"))


def refire_message(bot: SandboxedBot, room: str):
    return bot.slack.wait_for(lambda: next((m for m in bot.slack.top_level(room) if REFIRE in m.all_text), None))


def refire_in_channel(bot: SandboxedBot):
    """The same message under the announcement, also sent to the channel (nobody was paged)."""
    announcement = bot.slack.wait_for_message(ANNOUNCE, "INC-1 ·")
    return bot.slack.wait_for(
        lambda: next((m for m in bot.slack.thread(ANNOUNCE, announcement.ts) if REFIRE in m.all_text), None)
    )


def test_flapping_within_reopen_within_opens_nothing_pages_nobody_and_edits_one_message(refire_bot):
    room = declared_and_resolved(refire_bot)
    paged_before = pages(refire_bot)

    assert flap(refire_bot, 1).body["outcomes"] == ["refire"]
    message = refire_message(refire_bot, room)
    assert "Error rate &gt; 5% for 2 min* is firing again, under a minute after INC-1 was resolved" in message.all_text
    button = message.button("incident_reopen")
    assert button["value"] == "1" and button["text"] == "Reopen INC-1"
    assert "1 firing notification since the resolution" in message.all_text
    shown = refire_in_channel(refire_bot)
    assert shown.reply_broadcast and shown.button("incident_reopen")["value"] == "1"

    # It flaps: closes, fires again (a new Cloud Monitoring incident), and is re-sent while firing.
    flap(refire_bot, 1, "closed")
    assert flap(refire_bot, 2).body["outcomes"] == ["refire"]
    assert flap(refire_bot, 2).body["outcomes"] == ["refire"]
    refire_bot.slack.wait_for(
        lambda: (
            "3 firing notifications since the resolution" in current(refire_bot, message).all_text
            and "1 firing, 1 closed" in current(refire_bot, message).all_text
        ),
        timeout=15,
    )
    assert current(refire_bot, message).edited
    refire_bot.slack.wait_for(lambda: "3 firing notifications" in current(refire_bot, shown).all_text, timeout=15)
    time.sleep(0.5)  # anything still owed would be sent by now
    assert len(refire_posts(refire_bot)) == 2  # one post in each place; the re-fires edited them
    assert refire_bot.bot.store.count_incidents() == 1
    assert not refire_bot.bot.store.get(1).is_open  # nothing reopened by itself
    assert pages(refire_bot) == paged_before  # nobody paged
    assert not [m for m in refire_bot.slack.top_level(ANNOUNCE) if "INC-2" in m.all_text]
    assert refire_bot.bot.store.unsettled_alerts() == []


def test_reopen_button_reopens_once_and_refuses_others_and_forgeries(refire_bot):
    room = declared_and_resolved(refire_bot)
    flap(refire_bot, 1)
    message = refire_message(refire_bot, room)
    button = message.button("incident_reopen")

    # Someone who may not reopen is told who may; nothing changes.
    refused = refire_bot.click(button, user="U0ALICE")
    assert "may reopen INC-1" in refused.wait_response().text
    forged = refire_bot.click(action_id="incident_reopen", value="1:999", user=PRIMARY)
    assert "nothing was changed" in forged.wait_response().text
    unknown = refire_bot.click(action_id="incident_reopen", value="4242", user=PRIMARY)
    assert "nothing was changed" in unknown.wait_response().text
    assert not refire_bot.bot.store.get(1).is_open
    assert current(refire_bot, message).has_button("incident_reopen")

    pressed = refire_bot.click(button, user=PRIMARY)
    assert "INC-1 reopened" in pressed.wait_response().text
    refire_bot.slack.wait_for(lambda: refire_bot.bot.store.get(1).is_open)
    edited = refire_bot.slack.wait_for(
        lambda: f"<@{PRIMARY}> reopened INC-1" in (m := current(refire_bot, message)).all_text and m, timeout=10
    )
    assert not edited.has_button("incident_reopen")
    in_channel = refire_bot.slack.wait_for(
        lambda: (
            f"<@{PRIMARY}> reopened INC-1" in (m := current(refire_bot, refire_in_channel(refire_bot))).all_text and m
        ),
        timeout=10,
    )
    assert not in_channel.has_button("incident_reopen")
    # The re-fire still firing is the reopened incident's alert now: its line follows in the thread.
    assert [a.incident for a in refire_bot.bot.store.alerts_of(1)] == [1, 1]
    # Reopening restarts paging as /incident reopen does: the escalation path runs again.
    assert refire_bot.bot.store.get(1).status == "investigating"

    again = refire_bot.click(button, user=PRIMARY)
    assert "already open again (reopened by <@U0PRIMARY>)" in again.wait_response().text
    assert len([e for e in refire_bot.bot.store.timeline(1) if e.kind == "reopen"]) == 1

    # A later alert of the group joins the reopened incident: no new incident, no re-fire.
    assert flap(refire_bot, 3).body["outcomes"] == ["attached"]
    assert refire_bot.bot.store.count_incidents() == 1


def test_a_re_fire_after_the_window_opens_a_new_incident():
    with SandboxedBot(config_text=config("2s")) as running:
        declared_and_resolved(running)
        resolved_at = running.bot.store.get(1).resolved_at
        # The window is what is tested: wait it out (2 s), then fire again.
        time.sleep(max(0.0, (resolved_at + timedelta(seconds=2.2) - datetime.now(UTC)).total_seconds()))

        assert flap(running, 1).body["outcomes"] == ["new"]
        running.slack.wait_for(lambda: running.bot.store.count_incidents() == 2)
        running.slack.wait_for(lambda: running.bot.store.get(2).announcement_ts)
        assert not refire_posts(running)
        assert not running.slack.refusals()


def test_a_re_fire_of_a_proposed_group_declared_into_a_resolved_incident_posts_in_it(refire_bot):
    labels = {"service_name": "tai-autonomics", "team": "payments"}

    def latency(fingerprint: str, status: str = "firing") -> dict:
        alert = alertmanager_alert(
            alertname="HighLatency",
            fingerprint=fingerprint,
            starts_at=datetime.now(UTC) - timedelta(seconds=10),
            labels={**labels, "instance": "a:8080"},
            summary="p95 above 1 s on a:8080",
        )
        if status == "resolved":
            alert.update(status="resolved", endsAt=datetime.now(UTC).isoformat())
        return alertmanager_notification([alert])

    send(am_url(refire_bot), latency("aa11"), token=ALERT_TOKEN, auth="bearer")
    proposal = refire_bot.slack.wait_for_message(ANNOUNCE, "HighLatency", with_button="alert_declare")
    refire_bot.click(proposal.button("alert_declare"), user=PRIMARY)
    room = refire_bot.slack.wait_for(lambda: refire_bot.bot.store.get(1) and refire_bot.bot.store.get(1).war_room_id)
    send(am_url(refire_bot), latency("aa11", "resolved"), token=ALERT_TOKEN, auth="bearer")
    refire_bot.command("resolve INC-1 Fixed", user=PRIMARY)
    refire_bot.slack.wait_for(lambda: not refire_bot.bot.store.get(1).is_open)
    posted = len(refire_bot.slack.top_level(ANNOUNCE))

    # The same group fires again (the same fingerprint, a new episode): no second proposal.
    assert send(am_url(refire_bot), latency("aa11"), token=ALERT_TOKEN, auth="bearer").body["outcomes"] == ["refire"]
    message = refire_message(refire_bot, room)
    assert "HighLatency* is firing again" in message.all_text and message.has_button("incident_reopen")
    time.sleep(0.3)
    assert len(refire_bot.slack.top_level(ANNOUNCE)) == posted  # no second proposal, no new incident
    assert refire_bot.bot.store.count_incidents() == 1

    # `/incident reopen` is the button's reopen: the message says who, its button gone.
    assert "INC-1 reopened" in refire_bot.command("reopen INC-1 Latency is back", user=PRIMARY).text
    edited = refire_bot.slack.wait_for(
        lambda: f"<@{PRIMARY}> reopened INC-1" in (m := current(refire_bot, message)).all_text and m, timeout=10
    )
    assert not edited.has_button("incident_reopen")
