"""Work a command owes Slack after its ack survives a SIGKILL in between, and lands once.

Each test holds one Slack or Google call open, kills the bot while it waits, and restarts it:
the update's lines, the diagnose summary and the post-mortem draft arrive exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from bot.store import Store
from tests.p1_script import ANNOUNCE, ROOM, p1_config
from tests.restarts.test_restart import BotProcess


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SlackSandbox, GcpSandbox, BotProcess, SlackPlatform]]:
    with SlackSandbox() as slack, GcpSandbox() as gcp:
        gcp.use("bad_deploy")
        bot = BotProcess(tmp_path, slack)
        # Timers far off: only the commands of the test send anything.
        config = p1_config(gcp.project, gcp.health_url).replace("update_every: 4s", "update_every: 1h")
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(config, encoding="utf-8")
        bot.env.update(gcp.env())
        bot.start()
        platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
        platform.command("declare p1 Checkout returns 500", user="U0ALICE")
        slack.wait_for_message(slack.wait_for(lambda: slack.channel_by_name(ROOM)).id, "first steps")
        try:
            yield slack, gcp, bot, platform
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()


def texts(slack: SlackSandbox, channel: str, text: str) -> list[str]:
    return [m.ts for m in slack.messages_in(channel) if text in m.all_text]


def test_an_update_acked_just_before_a_kill_is_posted_once_after_the_restart(world):
    slack, _, bot, platform = world
    room = slack.channel_by_name(ROOM).id
    slack.fail("chat.postMessage", 500, times=1000)  # Slack is having a moment as the bot dies
    assert platform.command("update Checkout errors began at 10:02", user="U0ALICE", channel=room).status == 200
    slack.wait_for(lambda: [c for c in slack.calls_to("chat.postMessage") if c.injected])
    bot.kill()
    slack.clear_faults()
    assert not texts(slack, room, "errors began at 10:02")

    bot.start()
    slack.wait_for_message(room, "errors began at 10:02", timeout=20)
    announcement = next(m for m in slack.top_level(ANNOUNCE) if "INC-1 ·" in m.all_text)
    slack.wait_for(lambda: texts(slack, ANNOUNCE, "errors began at 10:02"), timeout=20)
    time.sleep(1.0)
    assert len(texts(slack, room, "errors began at 10:02")) == 1
    assert [m.thread_ts for m in slack.messages_in(ANNOUNCE) if "errors began at 10:02" in m.all_text] == [
        announcement.ts
    ]


def test_a_diagnose_killed_mid_read_is_run_again_and_its_summary_posted_once(world):
    slack, gcp, bot, platform = world
    room = slack.channel_by_name(ROOM).id
    gcp.delay("logging", 3.0)  # the bot is still reading Cloud Logging when it dies
    assert platform.command("diagnose", user="U0PRIMARY", channel=room).status == 200
    time.sleep(0.8)
    bot.kill()
    gcp.heal()
    assert not texts(slack, room, "Diagnosis of")

    bot.start()
    slack.wait_for_message(room, "Diagnosis of", timeout=15)
    time.sleep(1.0)
    assert len(texts(slack, room, "Diagnosis of")) == 1


def test_a_summary_posted_just_before_a_kill_is_found_in_slack_not_posted_again(world):
    slack, _, bot, platform = world
    room = slack.channel_by_name(ROOM).id
    slack.hold_response("chat.postMessage", 3.0)  # Slack has the summary; the bot never hears back
    assert platform.command("diagnose", user="U0PRIMARY", channel=room).status == 200
    slack.wait_for_message(room, "Diagnosis of")
    bot.kill()
    slack.clear_faults()

    bot.start()
    store = Store(bot.env["INCIDENT_BOT_DB"])
    try:
        slack.wait_for(
            lambda: all(d.status == "sent" for d in store.deliveries(1, kind="diagnose")), timeout=10, what="recovery"
        )
    finally:
        store.close()
    time.sleep(0.5)
    assert len(texts(slack, room, "Diagnosis of")) == 1


def test_a_draft_upload_cut_short_by_a_kill_is_found_not_uploaded_again(world):
    slack, _, bot, platform = world
    room = slack.channel_by_name(ROOM).id
    slack.hold_response("files.completeUploadExternal", 3.0)  # shared in Slack; the bot never hears back
    assert platform.command("resolve Rolled back", user="U0ALICE", channel=room).status == 200
    slack.wait_for(lambda: slack.uploaded_files(), timeout=10, what="the upload")
    bot.kill()
    slack.clear_faults()

    bot.start()
    store = Store(bot.env["INCIDENT_BOT_DB"])
    try:
        draft = slack.wait_for(lambda: (d := store.draft(1)) and d.file_id and d, timeout=10, what="the draft record")
    finally:
        store.close()
    time.sleep(0.5)
    assert len(slack.uploaded_files()) == 1
    assert draft.file_id == slack.uploaded_files()[0].id


def test_a_kill_while_slack_has_not_shared_the_draft_yet_waits_for_the_share(world):
    # Slack takes the completion, the bot never hears back, and Slack shows the file only
    # seconds later: start-up must wait for that share, not upload the draft a second time.
    slack, _, bot, platform = world
    room = slack.channel_by_name(ROOM).id
    slack.share_uploads(8.0)
    slack.hold_response("files.completeUploadExternal", 3.0)
    assert platform.command("resolve Rolled back", user="U0ALICE", channel=room).status == 200
    [upload] = slack.wait_for(lambda: slack.uploaded_files(), timeout=10, what="the upload")
    bot.kill()
    slack.clear_faults()
    assert not slack.shared_files()

    bot.start()
    store = Store(bot.env["INCIDENT_BOT_DB"])
    try:
        draft = slack.wait_for(lambda: (d := store.draft(1)) and d.channel and d, timeout=20, what="the draft record")
    finally:
        store.close()
    assert [f.id for f in slack.shared_files()] == [upload.id]
    assert draft.file_id == upload.id and draft.channel == room
    assert len([c for c in slack.calls_to("files.completeUploadExternal") if c.ok]) == 1
