"""Display names (users.info) for the post-mortem are asked once, not on every retry of its upload."""

from __future__ import annotations

from slack_sdk import WebClient

from bot.sandbox.runner import BOT_TOKEN
from bot.sandbox.slack import SlackSandbox
from bot.slack.gateway import SlackGateway


def test_a_name_is_asked_of_slack_once_and_a_failed_ask_is_asked_again() -> None:
    with SlackSandbox(rate_limits=False) as slack:
        gateway = SlackGateway(WebClient(token=BOT_TOKEN, base_url=slack.api_url))
        slack.fail("users.info", 500, times=1)
        assert gateway.display_name("U0PRIMARY") is None
        first = gateway.display_name("U0PRIMARY")
        assert first and gateway.display_name("U0PRIMARY") == first
        assert gateway.display_name("U0NOBODY") is None
        assert gateway.display_name("U0NOBODY") is None
        asked = [c.params.get("user") for c in slack.calls if c.method == "users.info" and not c.injected]
        assert asked == ["U0PRIMARY", "U0NOBODY"], asked
