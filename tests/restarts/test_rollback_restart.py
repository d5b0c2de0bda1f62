"""A rollback under way when the bot is killed: at start-up it says the outcome is unknown and
never sends the change again.

The bot runs as a real `incident-bot serve` subprocess (SIGKILLed mid-change); Slack and the
Cloud Run emulator live in the test process and outlive it.
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.config import default_config_text
from bot.sandbox.cloud_run import OperationPlan
from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from bot.store import Store
from tests.restarts.test_restart import BotProcess


def test_a_rollback_killed_between_executing_and_its_outcome_is_reported_not_resent(tmp_path: Path):
    with SlackSandbox() as slack, GcpSandbox() as gcp:
        gcp.use("bad_deploy")
        gcp.cloud_run.operation_plan = OperationPlan(never=True)  # the bot is still waiting when killed
        config = (
            default_config_text()
            .replace("health_url: https://api.example.com/health", f"health_url: {gcp.health_url}")
            .replace("project: my-gcp-project", f"project: {gcp.project}")
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
            slack.wait_for_message(room, "Rolling back…")
            slack.wait_for(lambda: gcp.cloud_run.patches())

            bot.kill()
            gcp.cloud_run.allow_changes()
            store = Store(bot.env["INCIDENT_BOT_DB"])
            assert store.proposals()[-1].status == "executing"
            store.close()

            bot.start()

            # The channel notice, not the proposal (which is edited to say "Outcome unknown" too).
            notice = slack.wait_for(
                lambda: next((m for m in slack.messages_in(room) if m.text.startswith("Outcome unknown")), None),
                timeout=10,
            )
            assert "Check traffic" in notice.text

            def edited() -> str | None:
                text = next(m for m in slack.messages_in(room) if m.ts == proposal.ts).all_text
                return text if "Outcome unknown" in text else None

            assert "It has not been sent again" in slack.wait_for(edited)
            time.sleep(1.0)
            assert len(gcp.cloud_run.patches()) == 1, "the change is never re-sent"
            store = Store(bot.env["INCIDENT_BOT_DB"])
            assert store.proposals()[-1].status == "unknown"
            assert any(e.kind == "rollback-unknown" for e in store.timeline(1))
            store.close()

            bot.kill()
            bot.start()
            time.sleep(1.0)
            assert len([m for m in slack.messages_in(room) if m.text.startswith("Outcome unknown")]) == 1
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()
