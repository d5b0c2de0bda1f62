"""Tokens, the signing secret and the Statuspage key never reach a log line, an error or Slack,
however Slack, Google and Statuspage fail around them.

The bot runs with the production log set-up (JSON lines, bot/logs.py); every line it writes
while Slack refuses and errs, Statuspage answers 401 and 500, and Cloud Run and Cloud Logging
fail, is captured and searched, and so is every message the bot sent to Slack. The raw log
records are searched too, before any redaction: a secret must not get that far either.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.core import logs
from bot.sandbox.runner import BOT_TOKEN, SIGNING_SECRET, SandboxedBot
from bot.sandbox.statuspage import StatuspageSandbox
from tests.conftest import FAST_CONFIG

STATUSPAGE_KEY = "sp-live-0123456789abcdef0123456789abcdef"


class _Raw(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, _Raw]]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream, raw = io.StringIO(), _Raw()
    logs.configure("DEBUG", stream=stream, fmt="json")
    logs.register_secrets(BOT_TOKEN, SIGNING_SECRET, STATUSPAGE_KEY)
    root.addHandler(raw)
    try:
        yield stream, raw
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_no_secret_reaches_a_log_line_or_slack_while_everything_fails(
    captured: tuple[io.StringIO, _Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, raw = captured
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        monkeypatch.setenv("TEST_SECRET_SP_KEY", STATUSPAGE_KEY)
        config = FAST_CONFIG + (
            f"statuspage: {{page_id: pg1, api_key_env: TEST_SECRET_SP_KEY, api_url: '{page.api_url}'}}\n"
        )
        with SandboxedBot(config_text=config, preset="bad_deploy") as world:
            page.fail(times=3, status=500)
            world.slack.error("conversations.invite", "cant_invite", times=5)
            world.slack.fail("chat.update", status=500, times=5)
            world.command("declare p1 Checkout returns 500", user="U0PRIMARY")
            room = world.slack.wait_for(lambda: world.bot.store.get(1).war_room_id, timeout=10)
            page.fail(times=2, status=401)
            world.command("update --public identified Bad deploy", user="U0PRIMARY", channel=room)
            world.gcp.fail("logging", 500)
            world.gcp.fail("cloud_run", 403)
            world.command("diagnose", user="U0PRIMARY", channel=room)
            world.slack.wait_for_message(room, "Diagnosis ·", timeout=20)
            world.slack.error("chat.postMessage", "internal_error", times=2)
            world.command("rollback", user="U0PRIMARY", channel=room)
            world.slack.wait_for(lambda: page.calls, timeout=10)
            sent_to_slack = json.dumps([c.params for c in world.slack.calls], ensure_ascii=False)

    written = stream.getvalue()
    # The failures happened and were logged: the search below looks where secrets would leak.
    for failure in ("answered 500", "403", "internal_error"):
        assert any(failure in line for line in raw.lines), f"no log line mentions {failure!r}"
    for secret in (BOT_TOKEN, SIGNING_SECRET, STATUSPAGE_KEY):
        assert secret not in written, f"{secret[:6]}… in a log line"
        assert not [line for line in raw.lines if secret in line], f"{secret[:6]}… in a raw log record"
        assert secret not in sent_to_slack, f"{secret[:6]}… sent to Slack"
