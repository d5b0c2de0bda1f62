"""PagerDuty end to end: Events API v2 out beside the Slack page, v3 webhook acks back in.

The bot sends to the local PagerDuty emulator (strict like PagerDuty: it validates events,
answers 429 over its rate limit, can be down) and takes signed webhooks the emulator sends when a
responder acknowledges in it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.domain.pagerduty import dedup_key
from bot.pagerduty.client import Pace, signature
from bot.sandbox.pagerduty import API_TOKEN, ROUTING_KEY, PagerDutySandbox
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

SECRET = "pd-webhook-secret-new"
OLD_SECRET = "pd-webhook-secret-old"
PD_CONFIG = (
    FAST_CONFIG
    + "pagerduty: {routing_key_env: TEST_PD_ROUTING_KEY, severities: [P1, P2],"
    + " webhook_secret_env: TEST_PD_WEBHOOK_SECRET, api_token_env: TEST_PD_API_TOKEN}\n"
)


@pytest.fixture
def pd_env(monkeypatch) -> None:
    monkeypatch.setenv("TEST_PD_ROUTING_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_PD_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("TEST_PD_API_TOKEN", API_TOKEN)


@pytest.fixture
def world(pd_env) -> Iterator[tuple[SandboxedBot, PagerDutySandbox]]:
    with PagerDutySandbox() as pd, SandboxedBot(config_text=PD_CONFIG, pagerduty=pd) as running:
        running.bot.deliveries.retry_base = timedelta(milliseconds=200)
        pd.subscribe(running.pagerduty_webhook_url, (SECRET,))
        yield running, pd
        assert not running.slack.refusals(), running.slack.refusals()


def events(pd: PagerDutySandbox, action: str | None = None, key: str | None = None) -> list[dict]:
    return [e for e in pd.accepted(action) if key is None or e["dedup_key"] == key]


def key_of(running: SandboxedBot, number: int = 1) -> str:
    incident = running.bot.store.get(number)
    assert incident is not None
    return dedup_key(incident)


def post_webhook(running: SandboxedBot, body: bytes, header: str | None) -> int:
    request = urllib.request.Request(running.pagerduty_webhook_url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if header is not None:
        request.add_header("X-PagerDuty-Signature", header)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_declare_triggers_with_the_routing_key_and_severity_mapping_then_the_links(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)

    triggers = running.slack.wait_for(lambda: events(pd, "trigger", key)[1:] and events(pd, "trigger", key))
    first, links = triggers
    assert first["routing_key"] == ROUTING_KEY
    assert first["payload"]["summary"] == "INC-1 P1 · Critical: Checkout returns 500"
    assert first["payload"]["severity"] == "critical"
    assert first["payload"]["source"] == running.bot.config.service.name
    assert first["payload"]["custom_details"]["commander"] == "U0ALICE"
    assert first["payload"]["custom_details"]["status"] == "investigating"
    assert first["payload"]["timestamp"].endswith("Z")
    # The links follow in one more trigger with the same key, once the war room exists.
    hrefs = [link["href"] for link in links["links"]]
    room = running.bot.store.get(1).war_room_id
    assert any(room in href for href in hrefs) and len(hrefs) == 2, hrefs
    assert links["dedup_key"] == key
    assert len(pd.alerts) == 1 and pd.alert(key).status == "triggered"


def test_p2_maps_to_error_and_p3_is_not_sent(world):
    running, pd = world
    running.command("declare p2 Search is slow", user="U0ALICE")
    running.command("declare p3 Export button broken", user="U0ALICE")
    running.slack.wait_for_dm("U0SUPPORT", "You are paged")
    running.slack.wait_for(lambda: events(pd, "trigger", key_of(running, 1)))
    assert events(pd, "trigger", key_of(running, 1))[0]["payload"]["severity"] == "error"
    time.sleep(0.5)
    assert not events(pd, key=key_of(running, 2))


def test_slack_ack_acknowledges_and_resolve_resolves_with_the_same_key(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    page = running.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    key = key_of(running)
    running.slack.wait_for(lambda: events(pd, "trigger", key))

    running.click(page.button("incident_ack"), user="U0PRIMARY")
    [ack] = running.slack.wait_for(lambda: events(pd, "acknowledge"))
    assert ack == {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": key}
    assert pd.alert(key).status == "acknowledged"

    running.command("resolve INC-1 Rolled back", user="U0ALICE")
    [resolve] = running.slack.wait_for(lambda: events(pd, "resolve"))
    assert resolve["dedup_key"] == key
    assert pd.alert(key).status == "resolved"


def test_an_ack_in_pagerduty_stops_the_slack_escalation_shown_as_that_person(world):
    running, pd = world
    pd.add_user("PDANA01", "Dana Cruz", "second@example.com")  # Slack knows this email: U0SECOND
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))

    assert pd.acknowledge(key, "PDANA01") == [200]
    incident = running.slack.wait_for(lambda: running.bot.store.get(1).acknowledged_at and running.bot.store.get(1))
    assert incident.acknowledged_by == "U0SECOND"
    # The page goes before the war room exists, so the ack can come first: the room, once made.
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    running.slack.wait_for_message(room, "INC-1 acknowledged in PagerDuty by <@U0SECOND>")
    time.sleep(2.5)  # past the secondary's step (2 s)
    assert not [m for m in running.slack.dms_to("U0SECOND") if "You are paged" in m.all_text]
    timeline = [e.text for e in running.bot.store.timeline(1)]
    assert any("acknowledged in PagerDuty by <@U0SECOND>" in t for t in timeline), timeline
    # No acknowledge goes back: PagerDuty has it.
    assert not events(pd, "acknowledge")


def test_an_ack_by_someone_slack_does_not_know_shows_their_pagerduty_name(world):
    running, pd = world
    pd.add_user("PNOBODY", "Robin Night", "robin@elsewhere.example")
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))

    assert pd.acknowledge(key, "PNOBODY") == [200]
    running.slack.wait_for(lambda: running.bot.store.get(1).acknowledged_at)
    assert running.bot.store.get(1).acknowledged_by == "pagerduty:Robin Night"
    running.slack.wait_for(
        lambda: [
            m
            for m in running.slack.top_level("C0INCIDENT")
            if "INC-1 ·" in m.all_text and "Robin Night in PagerDuty" in m.all_text
        ],
        timeout=10,
        what="the announcement showing who acknowledged in PagerDuty",
    )
    running.slack.wait_for_message("C0INCIDENT", "INC-1 acknowledged in PagerDuty by Robin Night.")
    # The page's button is gone, as after a Slack ack.
    running.slack.wait_for(
        lambda: not any(m.has_button("incident_ack") for m in running.slack.dms_to("U0PRIMARY")), timeout=5
    )
    # A Slack ack after it says who has it.
    reply = running.command("ack INC-1", user="U0PRIMARY")
    assert "already acknowledged by Robin Night in PagerDuty" in reply.text, reply.text
    # The same webhook twice changes things once.
    [(status, payload)] = pd.subscriptions[0].deliveries
    assert pd.deliver(pd.subscriptions[0], payload) == 200
    time.sleep(0.3)
    lines = [e for e in running.bot.store.timeline(1) if "acknowledged in PagerDuty" in e.text]
    assert len(lines) == 1


def test_a_bad_or_missing_signature_is_401_and_changes_nothing(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))
    alert = pd.alert(key)
    body = json.dumps(pd.webhook_payload(alert, "incident.acknowledged", "PX")).encode()

    assert post_webhook(running, body, None) == 401
    assert post_webhook(running, body, signature(body, "wrong-secret")) == 401
    assert post_webhook(running, body, signature(body + b" ", SECRET)) == 401  # signed another body
    assert post_webhook(running, body, "v0=" + signature(body, SECRET)[3:]) == 401  # unknown version
    assert running.bot.store.get(1).acknowledged_at is None


def test_a_rotated_secret_is_accepted(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))
    # During the rotation PagerDuty signs with the old and the new secret; the bot knows the new one.
    pd.subscriptions[0].secrets = (OLD_SECRET, SECRET)
    assert pd.acknowledge(key, "PANYONE") == [200]
    running.slack.wait_for(lambda: running.bot.store.get(1).acknowledged_at)


def test_a_429_then_202_delivers_the_event_once(world):
    running, pd = world
    pd.fail(times=1, status=429)
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    key = running.slack.wait_for(lambda: running.bot.store.get(1) and key_of(running))
    running.slack.wait_for(lambda: events(pd, "trigger", key))
    statuses = [c.status for c in pd.calls]
    assert statuses[0] == 429 and statuses[1] == 202

    def settled() -> list:
        sent = running.bot.store.deliveries(1, kind="pagerduty")
        return sent if all(d.status in ("sent", "cancelled") for d in sent) else []

    sent = running.slack.wait_for(settled)
    time.sleep(0.5)
    trigger = sent[0]
    assert trigger.target == "trigger" and trigger.status == "sent" and trigger.attempts == 2
    # Each event PagerDuty took is one delivery sent once (the links ride along or follow).
    assert len(events(pd, "trigger", key)) == len([d for d in sent if d.status == "sent"])
    assert len(pd.alerts) == 1
    room = running.bot.store.get(1).war_room_id
    assert not [m for m in running.slack.messages_in(room) if "PagerDuty" in m.all_text]


def test_a_400_is_reported_once_in_the_war_room_and_not_retried(world):
    running, pd = world
    pd.fail(times=50, status=400)
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    room = running.slack.wait_for(lambda: running.bot.store.get(1) and running.bot.store.get(1).war_room_id)
    warning = running.slack.wait_for_message(room, "PagerDuty refused the trigger")
    assert ROUTING_KEY not in warning.all_text
    time.sleep(1.0)
    refused = [m for m in running.slack.messages_in(room) if "PagerDuty refused" in m.all_text]
    assert len(refused) == 1
    assert [c.status for c in pd.calls] == [400]


def time_to_page(running: SandboxedBot, number: int, title: str) -> float:
    started = time.monotonic()
    running.command(f"declare p1 {title}", user="U0ALICE")
    running.slack.wait_for(
        lambda: [
            m for m in running.slack.dms_to("U0PRIMARY") if f"INC-{number}" in m.all_text and "paged" in m.all_text
        ],
        timeout=15,
    )
    return time.monotonic() - started


def test_pagerduty_down_at_declare_never_delays_the_slack_page_and_the_event_lands_when_it_is_back(world):
    running, pd = world
    assert running.bot.pagerduty is not None
    running.bot.pagerduty.timeout = 1.0
    time_to_page(running, 1, "Warm-up")  # the process's first declare pays for cold caches
    pd.hang()  # PagerDuty takes the connection and never answers: the worst kind of down

    down = time_to_page(running, 2, "Checkout returns 500")
    pd.heal()
    running.slack.wait_for(lambda: events(pd, "trigger", key_of(running, 2)), timeout=15)
    up = time_to_page(running, 3, "Search is down")

    print(f"time to page: PagerDuty hanging {down:.3f} s, PagerDuty up {up:.3f} s")
    assert down <= max(2 * up, up + 0.5), f"time to page with PagerDuty down {down:.2f} s, up {up:.2f} s"
    # The event landed once PagerDuty was back, once.
    assert len(pd.alerts) == 3 and pd.alert(key_of(running, 2)).status == "triggered"


def test_a_pagerduty_outage_is_told_once_in_the_war_room_and_slack_carries_on(world):
    running, pd = world
    pd.down()
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    warning = running.slack.wait_for_message(room, "PagerDuty did not take the trigger", timeout=15)
    assert "503" in warning.all_text
    pd.heal()
    running.slack.wait_for(lambda: events(pd, "trigger"), timeout=15)
    assert len([m for m in running.slack.messages_in(room) if "PagerDuty did not take" in m.all_text]) == 1


def test_a_slack_ack_while_pagerduty_is_down_drops_the_late_trigger(world):
    running, pd = world
    pd.down()
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    page = running.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    running.click(page.button("incident_ack"), user="U0PRIMARY")
    running.slack.wait_for(lambda: running.bot.store.get(1).acknowledged_at)
    pd.heal()
    running.slack.wait_for(lambda: events(pd, "acknowledge"), timeout=15)
    # Nobody's phone rings for an incident someone is already on.
    assert not events(pd, "trigger")
    dropped = [d for d in running.bot.store.deliveries(1, kind="pagerduty") if d.status == "cancelled"]
    assert {d.target for d in dropped} == {"trigger", "links"}


def test_severity_into_the_list_triggers_out_of_it_resolves_and_reopen_triggers_again(world):
    running, pd = world
    running.command("declare p3 Export button broken", user="U0ALICE")
    running.slack.wait_for_dm("U0SUPPORT", "You are paged")
    key = key_of(running)
    running.command("severity INC-1 p2", user="U0ALICE")
    [trigger] = running.slack.wait_for(lambda: events(pd, "trigger", key))
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["summary"].startswith("INC-1 P2 · High:")

    running.command("severity INC-1 p4", user="U0ALICE")
    running.slack.wait_for(lambda: events(pd, "resolve", key))
    assert pd.alert(key).status == "resolved"

    running.command("severity INC-1 p1", user="U0ALICE")
    running.slack.wait_for(lambda: len(events(pd, "trigger", key)) == 2)
    running.command("resolve INC-1 Fixed", user="U0ALICE")
    running.slack.wait_for(lambda: len(events(pd, "resolve", key)) == 2)
    running.command("reopen INC-1 It is back", user="U0ALICE")
    running.slack.wait_for(lambda: len(events(pd, "trigger", key)) == 3)
    # A trigger after a resolve opens a new alert in PagerDuty, under the same key.
    assert pd.alert(key).status == "triggered" and len(pd.alerts) == 3


def test_pagerduty_resolving_offers_resolve_and_never_resolves_by_itself(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)

    assert pd.resolve(key, "PANYONE") == [200]
    line = running.slack.wait_for_message(room, "PagerDuty says INC-1 is resolved", with_button="incident_resolve")
    assert running.bot.store.get(1).is_open
    # The same webhook again posts nothing more.
    [(_, payload)] = pd.subscriptions[0].deliveries
    assert pd.deliver(pd.subscriptions[0], payload) == 200
    time.sleep(0.5)
    assert len([m for m in running.slack.messages_in(room) if "PagerDuty says" in m.all_text]) == 1
    assert line.button("incident_resolve")["value"] == "1"


def test_unknown_keys_and_event_types_are_200_and_ignored(world):
    running, pd = world
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = key_of(running)
    running.slack.wait_for(lambda: pd.alert(key))
    alert = pd.alert(key)
    stranger = json.dumps(pd.webhook_payload(alert, "incident.acknowledged", "PX")).replace(key, "someone-else")
    for body in (
        stranger.encode(),
        json.dumps(pd.webhook_payload(alert, "incident.escalated", "PX")).encode(),
        json.dumps(pd.webhook_payload(alert, "incident.acknowledged", "PX"))
        .replace(key, "incident-bot:INC-1:1")
        .encode(),
        b'{"event": null}',
        b"[1, 2]",
    ):
        assert post_webhook(running, body, signature(body, SECRET)) == 200, body
    assert post_webhook(running, b"not json", signature(b"not json", SECRET)) == 400
    assert running.bot.store.get(1).acknowledged_at is None


def test_the_bot_paces_itself_to_pagerdutys_limit_and_meets_no_429(pd_env):
    # PagerDuty's limit shrunk to 3 events in 3 s (it is about 120 a minute), the bot's pace too.
    with (
        PagerDutySandbox(per_minute=3, window_s=3.0) as pd,
        SandboxedBot(config_text=PD_CONFIG, pagerduty=pd) as running,
    ):
        assert running.bot.pagerduty is not None
        running.bot.pagerduty.pace = Pace(events=3, window_s=3.0)
        for n in range(1, 5):
            running.command(f"declare p1 Storm part {n}", user="U0ALICE")
        keys = [
            running.slack.wait_for(lambda n=n: running.bot.store.get(n) and key_of(running, n)) for n in range(1, 5)
        ]
        running.slack.wait_for(lambda: all(events(pd, "trigger", k) for k in keys), timeout=20)
        assert [c.status for c in pd.calls if c.status != 202] == []  # paced: never refused
        started = [c.at for c in pd.calls]
        assert max(started) - min(started) >= 2.5  # the fourth waited for the window
        rooms = [running.bot.store.get(n).war_room_id for n in range(1, 5)]
        assert not [m for r in rooms if r for m in running.slack.messages_in(r) if "PagerDuty" in m.all_text]
