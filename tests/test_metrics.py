"""GET /metrics: Prometheus text with the bot's counters and the store's backlog."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.errors import SlackApiError

from bot.sandbox.runner import SandboxedBot


def _scrape(bot: SandboxedBot) -> dict[str, float]:
    with urllib.request.urlopen(f"{bot.base_url}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {
        sample.name + "".join(f"|{k}={v}" for k, v in sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_show_the_delivery_backlog_read_from_the_store(bot: SandboxedBot) -> None:
    assert _scrape(bot)["incident_bot_delivery_queue_depth"] == 0
    store = bot.bot.store  # type: ignore[union-attr]
    bot.slack.fail("chat.postMessage", status=500, times=1000)  # pages stay owed, retried later
    bot.command("declare p1 Checkout returns 500")
    deadline = time.monotonic() + 10
    while store.delivery_backlog()[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    scraped = _scrape(bot)
    assert scraped["incident_bot_open_incidents"] == 1
    assert scraped["incident_bot_delivery_queue_depth"] == store.delivery_backlog()[0] >= 1
    assert scraped["incident_bot_delivery_oldest_age_seconds"] >= 0.3
    bot.slack.clear_faults()


def test_slack_api_errors_are_counted_by_method_and_code(bot: SandboxedBot) -> None:
    def count() -> float:
        value = REGISTRY.get_sample_value(
            "incident_bot_slack_api_errors_total", {"method": "chat.postMessage", "code": "channel_not_found"}
        )
        return value or 0.0

    before = count()
    bot.slack.error("chat.postMessage", "channel_not_found")
    with pytest.raises(SlackApiError):
        bot.bot.slack.post("C0INCIDENT", "hello")  # type: ignore[union-attr]
    assert count() == before + 1
