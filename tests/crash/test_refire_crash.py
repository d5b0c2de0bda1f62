"""A re-fire's message survives a SIGKILL mid-post: after the restart it is there once in each
place, and the next re-fire edits it. The bot is a real `incident-bot serve` subprocess; Slack
lives in this process and outlives it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox.monitoring import send
from bot.sandbox.runner import ALERT_TOKEN, SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from tests.e2e.test_alerts import ALERTS_CONFIG, ANNOUNCE, PRIMARY, error_rate
from tests.restarts.test_restart import BotProcess

REFIRE = "is firing again"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SlackSandbox, BotProcess]]:
    with SlackSandbox() as slack:
        bot = BotProcess(tmp_path, slack)
        config = ALERTS_CONFIG.replace("alerts:\n", "alerts:\n  reopen_within: 1h\n", 1)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(config, encoding="utf-8")
        bot.env["ALERT_WEBHOOK_TOKEN"] = ALERT_TOKEN
        try:
            yield slack, bot
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()


def flap(bot: BotProcess, episode: int):
    payload = error_rate(started=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5))
    payload["incident"]["incident_id"] = f"0.flap{episode}"
    return send(f"http://127.0.0.1:{bot.port}/alerts/cloud-monitoring", payload, token=ALERT_TOKEN)


def refires(slack: SlackSandbox, channel: str) -> list:
    return [m for m in slack.messages_in(channel) if REFIRE in m.all_text]


def test_a_re_fire_message_killed_mid_post_is_there_once_after_the_restart(world):
    slack, bot = world
    bot.start()
    platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    url = f"http://127.0.0.1:{bot.port}/alerts/cloud-monitoring"
    assert send(url, error_rate(started=started), token=ALERT_TOKEN).status == 202
    slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack", timeout=15)
    room = slack.wait_for(lambda: slack.channel_by_name("inc-1-error-rate-5-for-2-min"), timeout=15).id
    send(url, error_rate("closed", started=started), token=ALERT_TOKEN)
    announcement = slack.wait_for_message(ANNOUNCE, "INC-1 ·")
    slack.wait_for(
        lambda: any("Every alert attached to INC-1 has closed" in m.all_text for m in slack.messages_in(room)),
        timeout=15,
    )
    platform.command("resolve INC-1 Rolled back", user=PRIMARY)
    slack.wait_for(lambda: any("is resolved" in m.all_text for m in slack.messages_in(room)), timeout=15)

    # Slack carries the post out but answers late: the bot dies waiting for the answer.
    slack.hold_response("chat.postMessage", 5.0)
    assert flap(bot, 1).body["outcomes"] == ["refire"]
    slack.wait_for(lambda: refires(slack, room), timeout=15)
    bot.kill()
    slack.clear_faults()

    bot.start()
    slack.wait_for(lambda: refires(slack, ANNOUNCE), timeout=20)
    time.sleep(1.0)  # anything owed twice would be sent by now
    assert len(refires(slack, room)) == 1
    [in_thread] = refires(slack, ANNOUNCE)
    assert in_thread.thread_ts == announcement.ts and in_thread.reply_broadcast

    # The next re-fire edits both, posts nothing.
    assert flap(bot, 2).body["outcomes"] == ["refire"]
    slack.wait_for(
        lambda: all("2 firing notifications" in m.all_text for m in refires(slack, room) + refires(slack, ANNOUNCE)),
        timeout=15,
    )
    assert len(refires(slack, room)) == 1 and len(refires(slack, ANNOUNCE)) == 1
