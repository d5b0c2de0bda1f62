"""PagerDuty announces every change, also those the bot made through the Events API.

A v3 subscription to `incident.acknowledged` and `incident.resolved` hears the bot's own
acknowledge and resolve come back (the agent is the Events API integration). The echo of a
resolve the bot sent because the severity left the list must not tell the war room that
"PagerDuty says it is resolved": the incident is open, and nobody resolved anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.domain.pagerduty import dedup_key
from bot.sandbox.pagerduty import ROUTING_KEY, PagerDutySandbox
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

SECRET = "pd-echo-webhook-secret"
PD_CONFIG = (
    FAST_CONFIG
    + "pagerduty: {routing_key_env: TEST_PD_ECHO_KEY, severities: [P1, P2], webhook_secret_env: TEST_PD_ECHO_SECRET}\n"
)


@pytest.fixture
def world(monkeypatch) -> Iterator[tuple[SandboxedBot, PagerDutySandbox]]:
    monkeypatch.setenv("TEST_PD_ECHO_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_PD_ECHO_SECRET", SECRET)
    with PagerDutySandbox() as pd, SandboxedBot(config_text=PD_CONFIG, pagerduty=pd) as running:
        running.bot.deliveries.retry_base = timedelta(milliseconds=200)
        pd.subscribe(running.pagerduty_webhook_url, (SECRET,))
        yield running, pd
        assert not running.slack.refusals(), running.slack.refusals()


def echoes(pd: PagerDutySandbox, event_type: str) -> list[tuple[int | None, dict]]:
    return [
        (status, payload)
        for status, payload in pd.subscriptions[0].deliveries
        if payload["event"]["event_type"] == event_type
        and payload["event"]["agent"]["type"] == "events_api_v2_inbound_integration_reference"
    ]


def settle(running: SandboxedBot) -> None:
    """Everything the bot owes for INC-1 is sent or dropped (so a post an echo caused is seen)."""
    running.slack.wait_for(
        lambda: all(d.status in ("sent", "cancelled", "superseded") for d in running.bot.store.deliveries(1)),
        timeout=10,
        what="INC-1's deliveries settled",
    )


def test_the_echo_of_the_bots_own_resolve_offers_nothing_and_a_responders_resolve_still_does(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    incident = running.slack.wait_for(lambda: running.bot.store.get(1))
    key = dedup_key(incident)
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    running.slack.wait_for(lambda: pd.alert(key))

    # Lowered out of the list: the bot resolves in PagerDuty, and PagerDuty says so back.
    running.command("severity INC-1 p3", user="U0ALICE")
    [(status, _)] = running.slack.wait_for(lambda: echoes(pd, "incident.resolved"))
    assert status == 200
    # Raised again: a new alert, and this time a responder resolves it in PagerDuty.
    running.command("severity INC-1 p1", user="U0ALICE")
    running.slack.wait_for(lambda: (a := pd.alert(key)) and a.status == "triggered" and a)
    assert pd.resolve(key, "PANYONE") == [200]
    running.slack.wait_for_message(room, "PagerDuty says INC-1 is resolved", with_button="incident_resolve")
    settle(running)

    said = [m for m in running.slack.messages_in(room) if "PagerDuty says" in m.all_text]
    assert len(said) == 1, [m.all_text for m in said]
    assert running.bot.store.get(1).is_open


def test_the_echo_of_a_slack_ack_and_resolve_changes_nothing_more(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    page = running.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    key = dedup_key(running.bot.store.get(1))
    running.slack.wait_for(lambda: pd.alert(key))
    # The page goes before the war room exists (issue 18): wait for the room.
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)

    running.click(page.button("incident_ack"), user="U0PRIMARY")
    [(status, _)] = running.slack.wait_for(lambda: echoes(pd, "incident.acknowledged"))
    assert status == 200
    assert running.bot.store.get(1).acknowledged_by == "U0PRIMARY"
    running.command("resolve INC-1 Rolled back", user="U0ALICE")
    [(status, _)] = running.slack.wait_for(lambda: echoes(pd, "incident.resolved"))
    assert status == 200
    settle(running)
    assert not [
        m for m in running.slack.messages_in(room) if "in PagerDuty" in m.all_text or "PagerDuty says" in m.all_text
    ]
    lines = [e.text for e in running.bot.store.timeline(1) if "acknowledged" in e.text]
    assert len(lines) == 1, lines


def test_the_links_follow_as_soon_as_the_war_room_exists_not_at_the_next_backoff(world):
    """The links trigger waits for the war room as "not placed yet": pulled forward by the set-up,
    never left to a backoff (here a minute) when the room is made a moment after the page."""
    running, pd = world
    running.bot.deliveries.retry_base = timedelta(seconds=60)
    running.slack.delay("conversations.create", 1.5, times=1)
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = dedup_key(running.slack.wait_for(lambda: running.bot.store.get(1)))
    [first] = running.slack.wait_for(lambda: pd.accepted("trigger"))
    assert "links" not in first  # sent before the war room existed
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    [_, links] = running.slack.wait_for(lambda: pd.accepted("trigger")[1:] and pd.accepted("trigger"))
    assert links["dedup_key"] == key and any(room in link["href"] for link in links["links"])
