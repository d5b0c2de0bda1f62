"""GET /metrics: Prometheus text with the bot's counters and the store's backlog."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

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


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_commands_are_counted_by_verb_and_outcome(bot: SandboxedBot) -> None:
    def count(verb: str, outcome: str) -> float:
        return _sample("incident_bot_commands_total", {"verb": verb, "outcome": outcome})

    before = {k: count(*k) for k in [("help", "ok"), ("unknown", "usage_error"), ("resolve", "forbidden")]}
    bot.command("help")
    bot.command("frobnicate everything")  # not a verb: counted as `unknown`, never by what was typed
    bot.command("declare p3 Export button broken", user="U0PRIMARY")
    bot.command("resolve INC-1 done", user="U0NOBODY")  # no role, not paged: refused
    assert count("help", "ok") == before[("help", "ok")] + 1
    assert count("unknown", "usage_error") == before[("unknown", "usage_error")] + 1
    assert count("resolve", "forbidden") == before[("resolve", "forbidden")] + 1


def test_pages_sent_and_timer_lag_are_measured(fast_bot: SandboxedBot) -> None:
    pages = _sample("incident_bot_deliveries_sent_total", {"kind": "page"})
    lags = _sample("incident_bot_timer_lag_seconds_count")
    fast_bot.command("declare p1 Checkout returns 500")
    fast_bot.slack.wait_for_dm("U0SECOND", "You are paged")  # a timer fired: the 2 s step
    fast_bot.slack.wait_for(lambda: _sample("incident_bot_deliveries_sent_total", {"kind": "page"}) >= pages + 2)
    assert _sample("incident_bot_timer_lag_seconds_count") > lags


def test_health_reports_the_delivery_backlog(bot: SandboxedBot) -> None:
    with urllib.request.urlopen(f"{bot.base_url}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert health["delivery_backlog"] == 0 and health["oldest_pending_s"] is None


def _get(url: str, token: str | None = None) -> tuple[int, bytes, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers  # case-insensitive, like HTTP


def test_with_metrics_token_metrics_need_it_and_health_says_only_ready_without_it() -> None:
    with SandboxedBot(metrics_token="metrics-token-for-tests") as running:
        running.command("declare p3 Export button broken")
        status, body, headers = _get(f"{running.base_url}/metrics")
        assert status == 401 and b"incident_bot_" not in body
        assert headers.get("WWW-Authenticate", "").startswith("Bearer")
        assert _get(f"{running.base_url}/metrics", "wrong-token")[0] == 401
        status, body, _ = _get(f"{running.base_url}/metrics", "metrics-token-for-tests")
        assert status == 200 and b"incident_bot_open_incidents 1.0" in body

        status, body, _ = _get(f"{running.base_url}/health")
        assert status == 200 and json.loads(body) == {"status": "ok"}
        assert json.loads(_get(f"{running.base_url}/healthz", "wrong-token")[1]) == {"status": "ok"}
        status, body, _ = _get(f"{running.base_url}/health", "metrics-token-for-tests")
        detailed = json.loads(body)
        assert status == 200 and detailed["open_incidents"] == 1 and "lease_holder" in detailed


def test_without_metrics_token_metrics_and_health_stay_open_as_before(bot: SandboxedBot) -> None:
    assert _get(f"{bot.base_url}/metrics")[0] == 200
    assert "open_incidents" in json.loads(_get(f"{bot.base_url}/health")[1])
