"""Handoff notices: a DM to the incoming and the outgoing person, once per handoff, across restarts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot import config as config_module
from bot.domain.schedules import shift_at, when
from bot.oncall.handoffs import HandoffNotices
from bot.sandbox.runner import SandboxedBot
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from tests.e2e.test_oncall import schedule_config
from tests.restarts.test_restart import SIGNING_SECRET, BotProcess


def notices(slack: SlackSandbox, user: str, text: str) -> list:
    return [m for m in slack.dms_to(user) if text in m.all_text]


def test_the_handoff_dm_is_sent_once_across_a_restart_that_straddles_the_handoff(tmp_path: Path):
    config = schedule_config(rotation="10s", members="U0ALICE, U0BOB")
    schedule = config_module.parse(config).schedules["primary"]
    with SlackSandbox() as slack:
        bot = BotProcess(tmp_path, slack)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(config, encoding="utf-8")
        try:
            bot.start()
            SlackPlatform(bot.url, SIGNING_SECRET, slack).command("declare p3 Export button broken", user="U0LEAD")
            now = datetime.now(UTC)
            shift = shift_at(schedule, now)
            assert shift is not None
            handoff = shift.ends_at
            if handoff - now < timedelta(seconds=1.5):  # too close to die before it: straddle the next one
                handoff = shift_at(schedule, handoff).ends_at  # type: ignore[union-attr]
            bot.kill()
            assert datetime.now(UTC) < handoff, "the bot must be down when the handoff comes"
            time.sleep(max(0.0, (handoff - datetime.now(UTC)).total_seconds() + 0.3))

            bot.start()
            assert datetime.now(UTC) < handoff + schedule.length, "back before the following handoff"
            incoming = shift_at(schedule, handoff).member  # type: ignore[union-attr]
            outgoing = shift_at(schedule, handoff - timedelta(microseconds=1)).member  # type: ignore[union-attr]
            until = f"until {when(handoff + schedule.length, schedule, handoff)}"
            dm = slack.wait_for_dm(incoming, f"You are on call for *primary* {until}")
            assert "INC-1 (P3 · Export button broken) is open." in dm.all_text
            # The first start noticed the handoff just before it (seconds old: within the grace), so
            # the outgoing may already hold a "shift is over" of an earlier handoff (whenever the
            # declare came within 1.5 s of a handoff and the next one is straddled): wait for this
            # handoff's own, not the newest "shift is over" at the moment of looking.
            handover = slack.wait_for_dm(outgoing, f"<@{incoming}> is on call {until}")
            assert "shift is over" in handover.all_text and "INC-1" in handover.all_text

            bot.kill()
            bot.start()
            time.sleep(0.5)
            assert len(notices(slack, incoming, f"You are on call for *primary* {until}")) == 1
            assert len(notices(slack, outgoing, f"<@{incoming}> is on call {until}")) == 1
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()


def test_a_handoff_notice_slack_refused_is_retried_and_sent_once():
    with SandboxedBot(config_text=schedule_config()) as running:
        bot = running.bot
        store = bot.store
        notices_job = HandoffNotices(bot.config, store, bot.slack, bot.announcer, bot.directory, bot.timers.clock)

        def bot_job_is_idle() -> bool:
            job = bot.timers.scheduler.job_for("handoffs")
            return job is not None and job.next_run_time > datetime.now(UTC) + timedelta(seconds=20)

        # The bot's own handoff job runs once as it starts: let it finish, or it races the sends below.
        running.slack.wait_for(bot_job_is_idle)
        # Today's handoff, six hours old when the bot started, is history: nothing was noticed.
        schedule = bot.config.schedules["primary"]
        shift = shift_at(schedule, datetime.now(UTC))
        assert shift is not None
        assert not notices_job.claim(schedule, datetime.now(UTC)), "six hours old: history, not noticed now"
        assert store.pending_handoff_notices() == [] and not notices(running.slack, "U0BOB", "You are on call")

        # A handoff an hour and a bit old is history; one minutes old is noticed.
        later = shift.starts_at + timedelta(minutes=5)
        with store.transaction() as db:
            db.execute("DELETE FROM handoffs")
            db.execute("DELETE FROM handoff_notices")
        assert not notices_job.claim(schedule, shift.starts_at + timedelta(minutes=61))
        running.slack.error("chat.postMessage", "ratelimited", times=2)
        assert notices_job.claim(schedule, later)
        assert not notices_job.claim(schedule, later), "a handoff is claimed once"
        assert notices_job.send_pending(), "Slack refused: still owed"
        assert len(store.pending_handoff_notices()) == 2
        assert notices_job.send_pending() == []
        assert store.pending_handoff_notices() == []
        assert notices_job.send_pending() == []
        assert len(notices(running.slack, "U0BOB", "You are on call for *primary*")) == 1
        assert len(notices(running.slack, "U0ALICE", "shift is over")) == 1
