"""The PagerDuty client against the emulator: events, errors, signatures, secrets kept out of sight."""

from __future__ import annotations

import logging

import pytest

from bot.pagerduty.client import PagerDutyClient, PagerDutyError, signature, signed
from bot.sandbox.pagerduty import API_TOKEN, ROUTING_KEY, PagerDutySandbox


def trigger(**payload: object) -> dict:
    body = {"summary": "INC-1 P1 · Critical: x", "source": "tai", "severity": "critical"} | payload
    return {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k1", "payload": body}


@pytest.fixture
def pd():
    with PagerDutySandbox() as sandbox:
        yield sandbox


def test_a_valid_trigger_is_202_with_its_dedup_key(pd):
    client = PagerDutyClient(ROUTING_KEY, pd.events_url)
    assert client.send(trigger()) == "k1"
    [call] = pd.calls
    assert call.status == 202


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        (trigger(severity="high"), "payload.severity"),
        (trigger(summary="x" * 1025), "longer than 1024"),
        (trigger(source=""), "payload.source"),
        (trigger(timestamp="yesterday"), "ISO 8601"),
        ({"routing_key": ROUTING_KEY, "event_action": "acknowledge"}, "dedup_key' is required"),
        ({"routing_key": ROUTING_KEY, "event_action": "page", "dedup_key": "k"}, "event_action"),
        ({"routing_key": "R0WRONG", "event_action": "resolve", "dedup_key": "k"}, "routing_key"),
        (trigger() | {"dedup_key": "k" * 256}, "at most 255"),
        (trigger() | {"links": [{"text": "no href"}]}, "links"),
    ],
)
def test_invalid_events_are_400_and_not_retryable(pd, event, complaint):
    client = PagerDutyClient(ROUTING_KEY, pd.events_url)
    with pytest.raises(PagerDutyError) as info:
        client.send(event)
    assert info.value.status_code == 400 and not info.value.retryable
    assert complaint in str(info.value)


def test_the_summary_limit_is_exactly_1024(pd):
    assert PagerDutyClient(ROUTING_KEY, pd.events_url).send(trigger(summary="x" * 1024)) == "k1"


def test_over_the_rate_limit_is_429_and_retryable():
    with PagerDutySandbox(per_minute=3) as pd:
        client = PagerDutyClient(ROUTING_KEY, pd.events_url)
        for _ in range(3):
            client.send(trigger())
        with pytest.raises(PagerDutyError) as info:
            client.send(trigger())
        assert info.value.status_code == 429 and info.value.retryable


def test_down_and_unreachable_are_retryable(pd):
    client = PagerDutyClient(ROUTING_KEY, pd.events_url, timeout=0.5)
    pd.down()
    with pytest.raises(PagerDutyError) as info:
        client.send(trigger())
    assert info.value.status_code == 503 and info.value.retryable
    pd.heal()
    pd.hang()
    with pytest.raises(PagerDutyError) as info:
        client.send(trigger())
    assert info.value.status_code is None and info.value.retryable


def test_the_routing_key_and_token_never_show(pd, caplog):
    client = PagerDutyClient(ROUTING_KEY, pd.events_url, api_token=API_TOKEN, api_url=pd.api_url)
    assert ROUTING_KEY not in repr(client) and API_TOKEN not in repr(vars(client))
    with pytest.raises(PagerDutyError) as info:
        client.send({"routing_key": ROUTING_KEY, "event_action": "nope"})
    assert ROUTING_KEY not in str(info.value)
    with caplog.at_level(logging.DEBUG):
        assert client.user_email("PMISSING") is None
    assert API_TOKEN not in caplog.text


def test_user_email_reads_the_rest_api_with_the_token(pd):
    pd.add_user("PDANA01", "Dana Cruz", "dana@example.com")
    assert (
        PagerDutyClient(ROUTING_KEY, pd.events_url, api_token=API_TOKEN, api_url=pd.api_url).user_email("PDANA01")
        == "dana@example.com"
    )
    wrong = PagerDutyClient(ROUTING_KEY, pd.events_url, api_token="wrong", api_url=pd.api_url)
    assert wrong.user_email("PDANA01") is None
    assert PagerDutyClient(ROUTING_KEY, pd.events_url).user_email("PDANA01") is None  # no token: no read


def test_signatures_any_valid_one_of_several_counts():
    body = '{"event": {"id": "1", "data": {"title": "Ünïcode"}}}'.encode()
    new, old = signature(body, "new"), signature(body, "old")
    assert signed(body, new, ["new"])
    assert signed(body, f"{old},{new}", ["new"])  # PagerDuty rotating: both sent
    assert signed(body, old, ["old", "new"])  # the bot rotating: both known
    assert not signed(body, old, ["new"])
    assert not signed(body + b"x", new, ["new"])
    assert not signed(body, new.replace("v1=", "v2="), ["new"])
    assert not signed(body, None, ["new"]) and not signed(body, "", ["new"]) and not signed(body, new, [])
    assert not signed(body, "v1=", ["new"])


def test_every_pagerduty_secret_is_redacted_from_the_logs_even_while_rotating():
    from bot.app.settings import config_secrets
    from bot.domain.policy import PagerDutyConfig

    config = PagerDutyConfig(routing_key_env="K", webhook_secret_env="S", api_token_env="T")
    env = {"K": ROUTING_KEY, "S": "old-secret, new-secret", "T": API_TOKEN}
    secrets = set(config_secrets(config, env))
    assert {ROUTING_KEY, API_TOKEN, "old-secret", "new-secret"} <= secrets


def test_the_pace_books_slots_within_the_window_and_says_when_the_next_frees():
    from bot.pagerduty.client import Pace

    pace = Pace(events=2, window_s=60.0, margin_s=0.0)
    assert pace.take(100.0) == 0.0 and pace.take(110.0) == 0.0
    assert pace.take(120.0) == pytest.approx(40.0)  # the first leaves the window at 160
    assert pace.take(160.0) == 0.0
    assert pace.take(165.0) == pytest.approx(5.0)
