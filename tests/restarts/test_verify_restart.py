"""A verify watch survives a SIGKILL: after the restart it resumes from the store, in the same
message, and its verdict is said once (issue 20). The bot runs as a real `incident-bot serve`
subprocess; Slack, Cloud Run, Monitoring and the live traffic live in the test process."""

from __future__ import annotations

import time
from pathlib import Path

from bot.config import default_config_text
from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from bot.store import Store
from tests.restarts.test_restart import BotProcess


def _watch(bot: BotProcess):
    store = Store(bot.env["INCIDENT_BOT_DB"])
    try:
        watches = store.watches()
        events = [e.kind for e in store.timeline(1)]
    finally:
        store.close()
    return (watches[-1] if watches else None), events


def test_a_watch_killed_mid_window_resumes_once_after_the_restart(tmp_path: Path):
    with SlackSandbox() as slack, GcpSandbox() as gcp:
        gcp.use("bad_deploy")
        gcp.start_live()
        config = (
            default_config_text()
            .replace("health_url: https://api.example.com/health", f"health_url: {gcp.health_url}")
            .replace("project: my-gcp-project", f"project: {gcp.project}")
            .replace("  window: 5m", "  window: 8s")
            .replace("  every: 30s", "  every: 1s")
        )
        bot = BotProcess(tmp_path, slack)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(config, encoding="utf-8")
        bot.env.update(gcp.env())
        try:
            bot.start()
            platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
            platform.command("declare p1 Checkout down", user="U0ALICE")
            room = slack.wait_for(lambda: slack.channel_by_name("inc-1-checkout-down")).id
            platform.command("rollback", user="U0LEAD", channel=room)
            proposal = slack.wait_for_message(room, "proposed by", with_button="rollback_confirm")
            platform.click(proposal.button("rollback_confirm"), user="U0LEAD", channel=room)
            slack.wait_for(lambda: (_watch(bot)[0] and len(_watch(bot)[0].samples) >= 2) or None, timeout=15)

            bot.kill()
            killed, _ = _watch(bot)
            assert killed is not None and killed.status == "watching"
            time.sleep(1.5)  # samples come due while the bot is down

            bot.start()

            held = slack.wait_for_message(room, "Held for 8s", timeout=20)
            watch, events = _watch(bot)
            assert watch is not None and watch.status == "held" and watch.id == killed.id
            offsets = [s.offset_s for s in watch.samples]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
            assert offsets[: len(killed.samples)] == [s.offset_s for s in killed.samples]  # resumed, not redone
            assert offsets[-1] >= 8
            messages = [m.ts for m in slack.messages_in(room) if ":mag: Verify*" in m.all_text]
            assert messages == [held.ts]  # the same message, edited on
            assert events.count("verify-held") == 1 and events.count("verify-started") == 1

            bot.kill()
            bot.start()
            time.sleep(1.5)
            watch, events = _watch(bot)
            assert events.count("verify-held") == 1 and len(watch.samples) == len(offsets)
            assert [m.ts for m in slack.messages_in(room) if ":mag: Verify*" in m.all_text] == [held.ts]
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()
