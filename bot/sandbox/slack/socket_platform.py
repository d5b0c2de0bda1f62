"""The Slack platform over Socket Mode: the same people and requests as `SlackPlatform`, sent
as envelopes on the bot's WebSocket instead of signed HTTP requests.

A slash command is a `slash_commands` envelope whose payload is the command's fields; a click or
a form an `interactive` one whose payload is the interaction (only a submission accepts a
response payload); an event an `events_api` one whose payload is the whole `event_callback`.
The bot's ack stands for its HTTP answer: its payload is the body, and an envelope not acked
within 3 s is what Slack shows the user as a failure.

    platform = SocketModePlatform(sandbox)
    result = platform.command("declare p1 Checkout down", user="U0PRIMARY")
    assert result.status == 200 and result.elapsed < 0.1
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import PlatformResult, SlackPlatform

# Interactions whose ack may carry a response (a view submission's response_action, options).
_ANSWERABLE = frozenset({"view_submission", "block_suggestion"})


class SocketModePlatform(SlackPlatform):
    """Delivers to whichever bot holds the sandbox's Socket Mode connection."""

    def __init__(self, sandbox: SlackSandbox, **kwargs: Any) -> None:
        super().__init__("socket-mode", "", sandbox, **kwargs)

    def send(
        self,
        body: str,
        *,
        content_type: str = "application/x-www-form-urlencoded",
        sign: bool = True,
        signature: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> PlatformResult:
        """One envelope for what would have been one HTTP request (Socket Mode has no signatures)."""
        retry_attempt: int | None = None
        retry_reason: str | None = None
        if content_type.startswith("application/json"):
            kind, payload, answerable = "events_api", json.loads(body), False
            extra = {k.lower(): v for k, v in (headers or {}).items()}
            if "x-slack-retry-num" in extra:
                retry_attempt = int(extra["x-slack-retry-num"])
                retry_reason = extra.get("x-slack-retry-reason")
        else:
            form = dict(parse_qsl(body, keep_blank_values=True))
            if "payload" in form:
                payload = json.loads(form["payload"])
                kind, answerable = "interactive", payload.get("type") in _ANSWERABLE
            else:
                kind, payload, answerable = "slash_commands", form, True
        envelope = self.sandbox.deliver(
            kind,
            payload,
            accepts_response_payload=answerable,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )
        latency = envelope.latency
        if latency is None:
            return PlatformResult(504, "", {}, self.timeout, self.sandbox)
        answer: Any = envelope.ack_payload if answerable and envelope.ack_payload is not None else ""
        got = {"Content-Type": "application/json"} if isinstance(answer, dict) else {}
        return PlatformResult(200, answer, got, latency, self.sandbox)
