"""PagerDuty waits 5 seconds for a webhook's answer (and disables a subscription whose webhooks keep
failing). With PagerDuty's REST API not answering, the look-up of who acknowledged must not make
the bot miss that: the ack counts within the time, shown by the PagerDuty name."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.domain.pagerduty import dedup_key
from bot.sandbox.pagerduty import API_TOKEN, ROUTING_KEY, WEBHOOK_TIMEOUT_S, PagerDutySandbox
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

SECRET = "pd-slow-rest-secret"
PD_CONFIG = FAST_CONFIG + (
    "pagerduty: {routing_key_env: TEST_PD_SLOW_KEY, severities: [P1], webhook_secret_env: TEST_PD_SLOW_SECRET,"
    " api_token_env: TEST_PD_SLOW_TOKEN}\n"
)


@pytest.fixture
def world(monkeypatch) -> Iterator[tuple[SandboxedBot, PagerDutySandbox]]:
    monkeypatch.setenv("TEST_PD_SLOW_KEY", ROUTING_KEY)
    monkeypatch.setenv("TEST_PD_SLOW_SECRET", SECRET)
    monkeypatch.setenv("TEST_PD_SLOW_TOKEN", API_TOKEN)
    with PagerDutySandbox() as pd, SandboxedBot(config_text=PD_CONFIG, pagerduty=pd) as running:
        pd.subscribe(running.pagerduty_webhook_url, (SECRET,))
        yield running, pd


def test_an_ack_while_pagerduty_rest_hangs_is_answered_in_time_and_shown_by_name(world):
    running, pd = world
    pd.add_user("PDANA01", "Dana Cruz", "second@example.com")  # Slack knows the email: U0SECOND
    running.command("declare p1 Checkout returns 500", user="U0ALICE")
    running.slack.wait_for_dm("U0PRIMARY", "You are paged")
    key = dedup_key(running.slack.wait_for(lambda: running.bot.store.get(1)))
    running.slack.wait_for(lambda: pd.alert(key))

    pd.hang(endpoint="user")
    started = time.monotonic()
    answers = pd.acknowledge(key, "PDANA01")
    took = time.monotonic() - started
    assert answers == [200], f"PagerDuty saw {answers} after {took:.1f} s"
    assert took < WEBHOOK_TIMEOUT_S
    incident = running.bot.store.get(1)
    assert incident.acknowledged_at is not None
    assert incident.acknowledged_by == "pagerduty:Dana Cruz"
