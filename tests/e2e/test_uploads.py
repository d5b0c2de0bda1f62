"""The post-mortem draft counts as delivered once Slack shows it in the channel.

Slack answers files.completeUploadExternal with `ok: true` before it shares the file, and now and
then never shares it. The sandbox does the same (`share_uploads`): these resolve a P1 over HTTP
and look at what Slack shows and what the bot recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.sandbox.runner import SandboxedBot
from bot.store import Store
from tests.conftest import FAST_CONFIG

SHARE_WITHIN_S = 2.0
CONFIG = FAST_CONFIG + f"postmortem: {{share_within: {SHARE_WITHIN_S:g}s}}\n"


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=CONFIG) as bot:
        yield bot
        assert not bot.slack.refusals(), f"Slack refused: {bot.slack.refusals()}"
        assert not bot.slack.errors, bot.slack.errors


def resolve_a_p1(bot: SandboxedBot) -> str:
    bot.command("declare p1 Checkout returns 500", user="U0ALICE")
    store = bot.bot.store  # type: ignore[union-attr]
    room: str = bot.slack.wait_for(lambda: (i := store.get(1)) and i.war_room_id or "")
    bot.slack.wait_for_message(room, "first steps")
    bot.command("ack", user="U0PRIMARY", channel=room)
    assert bot.command("resolve Rolled back", user="U0PRIMARY", channel=room).status == 200
    return room


def delivered(store: Store) -> bool:
    draft = store.draft(1)
    return draft is not None and draft.channel is not None


def completions(bot: SandboxedBot) -> int:
    return len([c for c in bot.slack.calls_to("files.completeUploadExternal") if c.ok])


def test_an_upload_slack_never_shares_is_deleted_and_uploaded_again(running):
    slack, store = running.slack, running.bot.store  # type: ignore[union-attr]
    slack.share_uploads(0.2, never=1)  # `ok: true`, and the file never appears
    room = resolve_a_p1(running)
    [lost] = slack.wait_for(lambda: slack.uploaded_files(), what="the first upload")
    slack.wait_for(lambda: delivered(store), timeout=SHARE_WITHIN_S + 10, what="the draft delivered")

    [shown] = slack.shared_files()
    assert shown.id != lost.id and shown.channels == (room,)
    assert completions(running) == 2
    # The one never shared is deleted: it cannot turn up beside the new one later.
    assert [c.params.get("file") for c in slack.calls_to("files.delete") if c.ok] == [lost.id]
    draft = store.draft(1)
    assert draft is not None and draft.file_id == shown.id and draft.channel == room
    assert [m for m in slack.messages_in(room) if m.files and m.files[0]["id"] == shown.id]


def test_an_upload_shared_late_is_waited_for_and_not_uploaded_again(running):
    slack, store = running.slack, running.bot.store  # type: ignore[union-attr]
    late_s = SHARE_WITHIN_S * 0.75  # later than the bot looks right after the upload
    slack.share_uploads(late_s)
    room = resolve_a_p1(running)
    [upload] = slack.wait_for(lambda: slack.uploaded_files(), what="the upload")
    slack.wait_for(lambda: delivered(store), timeout=SHARE_WITHIN_S + 10, what="the draft delivered")
    # Recorded delivered only once Slack showed it.
    assert [f.id for f in slack.shared_files()] == [upload.id]
    time.sleep(SHARE_WITHIN_S)  # past share_within: still one upload
    assert completions(running) == 1
    assert [f.id for f in slack.shared_files()] == [upload.id]
    assert not slack.calls_to("files.delete")
    draft = store.draft(1)
    assert draft is not None and draft.file_id == upload.id and draft.channel == room
