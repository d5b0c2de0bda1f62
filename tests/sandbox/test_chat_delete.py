"""chat.delete in the Slack sandbox, as Slack documents it: a bot token deletes the bot's own
messages only; `message_not_found`, `cant_delete_message`, `channel_not_found`; scope chat:write."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.constants import DEFAULT_SCOPES

TOKEN = "xoxb-sandbox"


def error_of(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SlackApiError) as caught:
        call()
    return str(caught.value.response["error"])


def test_the_bot_deletes_its_own_message(sandbox, client):
    posted = client.chat_postMessage(channel="C0INCIDENT", text="reminder 1")

    answer = client.chat_delete(channel="C0INCIDENT", ts=posted["ts"])

    assert answer["ok"] and answer["channel"] == "C0INCIDENT" and answer["ts"] == posted["ts"]
    assert posted["ts"] not in [m.ts for m in sandbox.messages_in("C0INCIDENT")]
    assert [m.text for m in sandbox.deleted] == ["reminder 1"]
    assert error_of(lambda: client.chat_delete(channel="C0INCIDENT", ts=posted["ts"])) == "message_not_found"


def test_a_bot_cannot_delete_what_a_person_wrote(sandbox, client):
    said = sandbox.user_says("C0INCIDENT", "U0ALICE", "I am on it")

    assert error_of(lambda: client.chat_delete(channel="C0INCIDENT", ts=said.ts)) == "cant_delete_message"
    assert said.ts in [m.ts for m in sandbox.messages_in("C0INCIDENT")]


def test_unknown_channel_and_ts(client):
    assert error_of(lambda: client.chat_delete(channel="C0NOPE", ts="1.000001")) == "channel_not_found"
    assert error_of(lambda: client.chat_delete(channel="C0INCIDENT", ts="1.000001")) == "message_not_found"


def test_a_deleted_parent_leaves_its_thread_behind_a_tombstone(sandbox, client):
    parent = client.chat_postMessage(channel="C0INCIDENT", text="announcement")
    client.chat_postMessage(channel="C0INCIDENT", text="a reply", thread_ts=parent["ts"])

    client.chat_delete(channel="C0INCIDENT", ts=parent["ts"])

    [tombstone] = [m for m in sandbox.messages_in("C0INCIDENT") if m.ts == parent["ts"]]
    assert tombstone.text == "This message was deleted." and not tombstone.blocks
    assert [m.text for m in sandbox.thread("C0INCIDENT", parent["ts"])] == ["a reply"]


def test_chat_delete_needs_chat_write():
    with SlackSandbox(scopes=DEFAULT_SCOPES - {"chat:write"}) as world:
        client = WebClient(token=TOKEN, base_url=world.api_url)
        assert error_of(lambda: client.chat_delete(channel="C0INCIDENT", ts="1.000001")) == "missing_scope"
