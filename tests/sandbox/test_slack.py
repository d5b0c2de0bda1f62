"""The Slack sandbox speaks Slack: real slack_sdk and slack_bolt clients against it, over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.signing import sign
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.blockkit import validate_blocks
from bot.sandbox.slack.constants import DEFAULT_SCOPES
from bot.sandbox.slack.platform import SlackPlatform
from bot.sandbox.slack.transcript import render

TOKEN = "xoxb-sandbox"
SECRET = "sandbox-signing-secret"


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(text: str, action_id: str, value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
    }


def slack_error(call: Any) -> dict[str, Any]:
    """The ok:false body slack_sdk raised for `call()`."""
    with pytest.raises(SlackApiError) as caught:
        call()
    return dict(caught.value.response.data)


def raw_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


# ---- Web API: messages ---------------------------------------------------------------------


def test_post_update_and_thread_are_recorded_like_slack_shows_them(sandbox, client):
    posted = client.chat_postMessage(
        channel="C0INCIDENT",
        text="INC-1 declared",
        blocks=[
            section("*INC-1* declared"),
            {"type": "actions", "elements": [button("Ack", "incident_ack", "1")]},
        ],
    )
    reply = client.chat_postMessage(channel="C0INCIDENT", thread_ts=posted["ts"], text="paged @primary")
    client.chat_update(channel="C0INCIDENT", ts=posted["ts"], text="INC-1 acknowledged", blocks=[section("acked")])

    parent, threaded = sandbox.messages_in("#incident-response")
    assert parent.ts == posted["ts"] and float(reply["ts"]) > float(posted["ts"])
    assert parent.text == "INC-1 acknowledged" and parent.edited
    assert parent.edits[0].text == "INC-1 declared"
    assert parent.edits[0].blocks[1]["elements"][0]["action_id"] == "incident_ack"
    assert parent.buttons() == []  # the update replaced the blocks
    assert threaded.is_reply and threaded.thread_ts == posted["ts"]

    history = client.conversations_history(channel="C0INCIDENT")["messages"]
    assert [m["ts"] for m in history] == [posted["ts"]]  # replies stay in the thread
    assert history[0]["reply_count"] == 1 and history[0]["edited"]["user"] == "U0BOT"
    replies = client.conversations_replies(channel="C0INCIDENT", ts=posted["ts"])["messages"]
    assert [m["text"] for m in replies] == ["INC-1 acknowledged", "paged @primary"]
    link = client.chat_getPermalink(channel="C0INCIDENT", message_ts=reply["ts"])["permalink"]
    assert link.endswith(f"?thread_ts={posted['ts']}&cid=C0INCIDENT")


def test_blocks_get_ids_and_buttons_can_be_found(sandbox, client):
    client.chat_postMessage(
        channel="C0INCIDENT",
        text="page",
        blocks=[
            {
                "type": "actions",
                "elements": [button("Acknowledge", "incident_ack", "7"), button("Later", "x")],
            }
        ],
    )
    message = sandbox.messages_in("C0INCIDENT")[0]
    ack = message.button("incident_ack")
    assert ack["value"] == "7" and ack["text"] == "Acknowledge" and ack["block_id"]
    assert [b["text"] for b in message.buttons()] == ["Acknowledge", "Later"]
    with pytest.raises(AssertionError, match="incident_ack"):
        message.button("nope")


@pytest.mark.parametrize("channel", ["#incident-response", "incident-response", "C0INCIDENT"])
def test_post_message_takes_a_channel_id_or_name(sandbox, client, channel):
    assert client.chat_postMessage(channel=channel, text="hi")["channel"] == "C0INCIDENT"
    assert sandbox.messages_in("C0INCIDENT")[0].text == "hi"


def test_posting_to_a_user_id_opens_the_dm(sandbox, client):
    posted = client.chat_postMessage(channel="U0PRIMARY", text="You are paged")
    opened = client.conversations_open(users="U0PRIMARY")
    assert opened["channel"]["id"] == posted["channel"] and posted["channel"].startswith("D")
    assert opened["already_open"] is True
    assert [m.text for m in sandbox.dms_to("U0PRIMARY")] == ["You are paged"]
    assert sandbox.dms_to("U0SECOND") == []
    fresh = client.conversations_open(users="U0SECOND", return_im=True)["channel"]
    assert fresh["is_im"] and fresh["user"] == "U0SECOND"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_a_message_needs_text_or_blocks_and_at_most_40000_chars(sandbox, client):
    assert slack_error(lambda: client.chat_postMessage(channel="C0INCIDENT", text=""))["error"] == "no_text"
    too_long = lambda: client.chat_postMessage(channel="C0INCIDENT", text="x" * 40_001)  # noqa: E731
    assert slack_error(too_long)["error"] == "msg_too_long"
    client.chat_postMessage(channel="C0INCIDENT", text="x" * 40_000)
    assert [c.error for c in sandbox.refusals()] == ["no_text", "msg_too_long"]


def test_update_refuses_unknown_and_foreign_messages(sandbox, client):
    unknown = lambda: client.chat_update(channel="C0INCIDENT", ts="1.000001", text="x")  # noqa: E731
    assert slack_error(unknown)["error"] == "message_not_found"
    ts = sandbox.new_ts()
    with sandbox._lock:  # a human's message, as if typed in Slack
        from bot.sandbox.slack.workspace import Message

        sandbox._add_message(Message("C0INCIDENT", ts, "U0ALICE", "hello"))
    foreign = lambda: client.chat_update(channel="C0INCIDENT", ts=ts, text="x")  # noqa: E731
    assert slack_error(foreign)["error"] == "cant_update_message"


def test_ephemeral_only_to_members(sandbox, client):
    sandbox.add_user("U0OUTSIDER", "outsider", email="outsider@example.com")
    result = client.chat_postEphemeral(channel="C0INCIDENT", user="U0PRIMARY", text="only you")
    assert result["message_ts"]
    assert [e.text for e in sandbox.ephemerals_to("U0PRIMARY")] == ["only you"]
    outsider = lambda: client.chat_postEphemeral(channel="C0INCIDENT", user="U0OUTSIDER", text="x")  # noqa: E731
    assert slack_error(outsider)["error"] == "user_not_in_channel"


# ---- Web API: channels -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, error",
    [
        ("", "invalid_name_required"),
        ("a" * 81, "invalid_name_maxlength"),
        ("Inc-7", "invalid_name_specials"),
        ("inc 7", "invalid_name_specials"),
        ("inc#7", "invalid_name_specials"),
        ("---", "invalid_name_punctuation"),
        ("incident-response", "name_taken"),
    ],
)
def test_channel_names_follow_slack_rules(client, name, error):
    assert slack_error(lambda: client.conversations_create(name=name))["error"] == error


def test_created_channel_has_the_bot_and_takes_invites_and_a_topic(sandbox, client):
    created = client.conversations_create(name="inc-7-" + "x" * 74)["channel"]
    assert created["is_member"] and sandbox.channel_by_name(created["name"]).id == created["id"]
    channel = created["id"]
    client.conversations_invite(channel=channel, users="U0PRIMARY,U0LEAD")
    assert client.conversations_members(channel=channel)["members"] == [
        "U0BOT",
        "U0PRIMARY",
        "U0LEAD",
    ]
    for users, error in [
        ("U0PRIMARY", "already_in_channel"),
        ("U0NOBODY", "user_not_found"),
        ("U0BOT", "cant_invite_self"),
        ("U0SECOND,U0NOBODY", "user_not_found"),
    ]:
        assert slack_error(lambda u=users: client.conversations_invite(channel=channel, users=u))["error"] == error
    assert "U0SECOND" not in sandbox.conversation(channel).members  # a failed invite adds nobody
    assert slack_error(lambda: client.conversations_setTopic(channel=channel, topic="t" * 251))["error"] == "too_long"
    client.conversations_setTopic(channel=channel, topic="t" * 250)
    client.conversations_setPurpose(channel=channel, purpose="Checkout down")
    info = client.conversations_info(channel=channel)["channel"]
    assert info["topic"]["value"] == "t" * 250 and info["purpose"]["value"] == "Checkout down"
    client.conversations_archive(channel=channel)
    assert slack_error(lambda: client.chat_postMessage(channel=channel, text="x"))["error"] == "is_archived"


def test_the_bot_must_be_in_a_channel_to_post_or_invite(sandbox, client):
    assert slack_error(lambda: client.chat_postMessage(channel="C0GENERAL", text="x"))["error"] == "not_in_channel"
    invite = lambda: client.conversations_invite(channel="C0GENERAL", users="U0BOB")  # noqa: E731
    assert slack_error(invite)["error"] == "not_in_channel"
    assert slack_error(lambda: client.chat_postMessage(channel="C0NOPE", text="x"))["error"] == "channel_not_found"
    client.conversations_join(channel="C0GENERAL")
    client.chat_postMessage(channel="C0GENERAL", text="now I can")
    assert [m.text for m in sandbox.messages_in("general")] == ["now I can"]
    assert [c.error for c in sandbox.refusals()] == [
        "not_in_channel",
        "not_in_channel",
        "channel_not_found",
    ]


def test_chat_write_public_scope_posts_without_joining():
    with SlackSandbox(scopes=DEFAULT_SCOPES | {"chat:write.public"}) as world:
        client = WebClient(token=TOKEN, base_url=world.api_url)
        client.chat_postMessage(channel="C0GENERAL", text="public")
        private = world.add_channel("secret", is_private=True, members=["U0ALICE"])
        assert (
            slack_error(lambda: client.chat_postMessage(channel=private.id, text="x"))["error"] == "channel_not_found"
        )


def test_users_by_id_and_email(client):
    assert client.users_info(user="U0LEAD")["user"]["name"] == "lead"
    assert client.users_lookupByEmail(email="vp@example.com")["user"]["id"] == "U0VP"
    assert slack_error(lambda: client.users_lookupByEmail(email="no@example.com"))["error"] == "users_not_found"


# ---- Web API: Block Kit ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([{"type": "divider"}] * 51, "no more than 50 items allowed [json-pointer:/blocks]"),
        (
            [section("x" * 3001)],
            "must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
            "must be less than 151 characters [json-pointer:/blocks/0/text/text]",
        ),
        (
            [{"type": "actions", "elements": [button("x" * 76, "a")]}],
            "must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "no more than 10 items allowed [json-pointer:/blocks/0/fields]",
        ),
        (
            [{"type": "header", "text": {"type": "mrkdwn", "text": "*bold*"}}],
            "must be a valid enum value [json-pointer:/blocks/0/text/type]",
        ),
        (
            [{"type": "actions", "elements": [{**button("Go", "a"), "style": "warning"}]}],
            "must be a valid enum value [json-pointer:/blocks/0/elements/0/style]",
        ),
        (
            [section("a") | {"block_id": "b"}, section("c") | {"block_id": "b"}],
            "block_id 'b' already exists",
        ),
        (
            [{"type": "actions", "elements": [button("A", "same"), button("B", "same")]}],
            "action_id 'same' already",
        ),
        ([section("")], "must be more than 0 characters [json-pointer:/blocks/0/text/text]"),
        (
            [{"type": "input", "label": {"type": "plain_text", "text": "L"}}],
            "failed to match all allowed schemas",
        ),
    ],
)
def test_invalid_blocks_are_refused_like_slack(sandbox, client, blocks, message):
    refused = slack_error(lambda: client.chat_postMessage(channel="C0INCIDENT", text="t", blocks=blocks))
    assert refused["error"] == "invalid_blocks"
    assert any(message in e for e in refused["errors"]), refused["errors"]
    assert any(m.startswith("[ERROR] ") and message in m for m in refused["response_metadata"]["messages"])
    assert sandbox.messages_in("C0INCIDENT") == []
    assert [c.method for c in sandbox.refusals()] == ["chat.postMessage"]


def test_blocks_at_the_limits_are_accepted(client):
    at_limits = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        section("s" * 3000),
        {"type": "actions", "elements": [button("b" * 75, "a", "v" * 2000)]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
    ] + [{"type": "divider"}] * 46
    assert validate_blocks(at_limits) == []
    assert client.chat_postMessage(channel="C0INCIDENT", text="t", blocks=at_limits)["ok"]


def test_form_encoded_blocks_are_parsed_too(sandbox):
    body = "channel=C0INCIDENT&text=hi&blocks=" + urllib.request.quote(json.dumps([section("x" * 3001)]))
    status, _, raw = raw_post(
        sandbox.api_url + "chat.postMessage",
        body.encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 200 and json.loads(raw)["error"] == "invalid_blocks"


# ---- Web API: auth and faults ----------------------------------------------------------------


def test_tokens_and_methods_are_checked(sandbox):
    status, _, raw = raw_post(sandbox.api_url + "auth.test", b"", {})
    assert (status, json.loads(raw)["error"]) == (200, "not_authed")
    bad = WebClient(token="xoxb-wrong", base_url=sandbox.api_url)
    assert slack_error(bad.auth_test)["error"] == "invalid_auth"
    good = WebClient(token=TOKEN, base_url=sandbox.api_url)
    assert good.auth_test()["user_id"] == "U0BOT"
    assert slack_error(lambda: good.api_call("chat.fly"))["error"] == "unknown_method"
    form_token = raw_post(sandbox.api_url + "auth.test", f"token={TOKEN}".encode(), {})
    assert json.loads(form_token[2])["ok"] is True


def test_missing_scope_is_reported_with_what_is_needed():
    with SlackSandbox(scopes=DEFAULT_SCOPES - {"users:read.email"}) as world:
        client = WebClient(token=TOKEN, base_url=world.api_url)
        refused = slack_error(lambda: client.users_lookupByEmail(email="vp@example.com"))
        assert (refused["error"], refused["needed"]) == ("missing_scope", "users:read.email")


def test_rate_limit_answers_429_with_retry_after(sandbox):
    sandbox.rate_limit("chat.postMessage", retry_after=7)
    status, headers, raw = raw_post(
        sandbox.api_url + "chat.postMessage",
        b'{"channel":"C0INCIDENT","text":"x"}',
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
    )
    assert status == 429 and headers["Retry-After"] == "7"
    assert json.loads(raw) == {"ok": False, "error": "ratelimited"}


def test_rate_limit_is_retried_by_slack_sdk(sandbox, client):
    sandbox.rate_limit("chat.postMessage", retry_after=0)  # 0 keeps the test fast
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    assert client.chat_postMessage(channel="C0INCIDENT", text="after retry")["ok"]
    assert [c.status for c in sandbox.calls_to("chat.postMessage")] == [429, 200]
    assert len(sandbox.messages_in("C0INCIDENT")) == 1
    sandbox.rate_limit("chat.postMessage", retry_after=0)
    bare = WebClient(token=TOKEN, base_url=sandbox.api_url)
    assert slack_error(lambda: bare.chat_postMessage(channel="C0INCIDENT", text="x"))["error"] == "ratelimited"


def test_injected_failures_raise_slack_api_error_once(sandbox, client):
    sandbox.fail("conversations.create", status=500)
    with pytest.raises(SlackApiError) as caught:
        client.conversations_create(name="inc-1")
    assert caught.value.response.status_code == 500
    assert client.conversations_create(name="inc-1")["ok"]  # times=1: the next call works
    sandbox.error("chat.postMessage", error="channel_not_found")
    assert slack_error(lambda: client.chat_postMessage(channel="C0INCIDENT", text="x"))["error"] == "channel_not_found"
    assert sandbox.refusals() == []  # injected, so not the bot's fault
    sandbox.delay("auth.test", 0.2)
    started = time.monotonic()
    client.auth_test()
    assert time.monotonic() - started >= 0.2


# ---- Web API: views --------------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "declare",
    "private_metadata": "C0INCIDENT",
    "title": {"type": "plain_text", "text": "Declare incident"},
    "submit": {"type": "plain_text", "text": "Declare"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        },
        {
            "type": "input",
            "block_id": "severity",
            "label": {"type": "plain_text", "text": "Severity"},
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [{"text": {"type": "plain_text", "text": p}, "value": p.lower()} for p in ("P1", "P2")],
            },
        },
    ],
}


def test_views_open_needs_a_fresh_trigger_from_slack(sandbox, client):
    assert slack_error(lambda: client.views_open(trigger_id="123.456.abc", view=MODAL))["error"] == "invalid_trigger_id"
    trigger = sandbox.issue_trigger_id("U0PRIMARY")
    view = client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "declare"
    assert sandbox.view_user(view["id"]) == "U0PRIMARY" and sandbox.is_view_open(view["id"])
    assert slack_error(lambda: client.views_open(trigger_id=trigger, view=MODAL))["error"] == "exchanged_trigger_id"


def test_expired_trigger_is_refused():
    with SlackSandbox(trigger_ttl=0.05) as world:
        client = WebClient(token=TOKEN, base_url=world.api_url)
        trigger = world.issue_trigger_id()
        time.sleep(0.1)
        assert slack_error(lambda: client.views_open(trigger_id=trigger, view=MODAL))["error"] == "expired_trigger_id"


def test_invalid_views_are_refused_with_invalid_arguments(sandbox, client):
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "x" * 25}}
    refused = slack_error(lambda: client.views_open(trigger_id=sandbox.issue_trigger_id(), view=long_title))
    assert refused["error"] == "invalid_arguments"
    assert refused["response_metadata"]["messages"] == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    ]
    no_submit = {k: v for k, v in MODAL.items() if k != "submit"}
    refused = slack_error(lambda: client.views_open(trigger_id=sandbox.issue_trigger_id(), view=no_submit))
    assert refused["error"] == "invalid_arguments"


# ---- signing ---------------------------------------------------------------------------------


def test_signature_is_what_slack_sdk_verifies():
    body = "token=x&text=declare+p1"
    headers = sign(SECRET, body)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + "&x=1", headers)
    assert not SignatureVerifier("other").is_valid_request(body, headers)
    fixed = sign(SECRET, body.encode(), timestamp=1_700_000_000)
    assert fixed["X-Slack-Signature"] == verifier.generate_signature(timestamp="1700000000", body=body)


# ---- the platform half: a real Bolt app receives what SlackPlatform sends -------------------


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def bolt(sandbox: SlackSandbox) -> Iterator[tuple[App, SlackPlatform, dict[str, Any]]]:
    """A minimal Bolt app served over HTTP, its WebClient pointed at the sandbox."""
    app = App(client=WebClient(token=TOKEN, base_url=sandbox.api_url), signing_secret=SECRET)
    seen: dict[str, Any] = {}
    server = make_server(
        "127.0.0.1",
        0,
        SlackRequestHandler(app),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    platform = SlackPlatform(f"http://127.0.0.1:{server.server_port}/slack/events", SECRET, sandbox)
    yield app, platform, seen
    server.shutdown()
    server.server_close()


def test_slash_command_reaches_bolt_and_respond_lands_in_the_sandbox(sandbox, bolt):
    app, platform, seen = bolt

    @app.command("/incident")
    def incident(ack, command, respond, client):
        seen["command"] = command
        ack(f"Declaring: {command['text']}")
        client.views_open(trigger_id=command["trigger_id"], view=MODAL)
        respond("INC-1 declared")

    result = platform.command("declare p1 Checkout down", user="U0SECOND")
    assert result.status == 200 and result.text == "Declaring: declare p1 Checkout down"
    assert result.wait_response().text == "INC-1 declared"
    command = seen["command"]
    assert (command["user_id"], command["user_name"], command["channel_id"]) == (
        "U0SECOND",
        "second",
        "C0INCIDENT",
    )
    assert command["channel_name"] == "incident-response" and command["command"] == "/incident"
    view = sandbox.wait_for_view("declare")  # the trigger_id Slack sent was accepted
    assert sandbox.view_user(view["id"]) == "U0SECOND"
    # The ack's body and the response_url post travel apart (Bolt answers while the handler goes
    # on), so which one Slack shows first is a race, there as here: both are shown, once each.
    assert sorted(e.text for e in sandbox.ephemerals_to("U0SECOND")) == [
        "Declaring: declare p1 Checkout down",
        "INC-1 declared",
    ]


def test_unsigned_or_forged_requests_are_rejected_by_bolt(bolt):
    app, platform, seen = bolt
    app.command("/incident")(lambda ack: ack("ran"))
    assert platform.command("list").status == 200
    assert platform.command("list", sign=False).status == 401
    assert platform.command("list", signature="v0=bad").status == 401
    assert platform.command("list", timestamp=int(time.time()) - 600).status == 401


def test_button_click_carries_the_real_block_actions_payload(sandbox, client, bolt):
    app, platform, seen = bolt

    @app.action("incident_ack")
    def on_ack(ack, body, action, respond):
        ack()
        seen["body"], seen["action"] = body, action
        respond(replace_original=True, text="Acknowledged by <@U0PRIMARY>")

    posted = client.chat_postMessage(
        channel="C0INCIDENT",
        text="INC-7",
        blocks=[
            section("INC-7"),
            {"type": "actions", "elements": [button("Acknowledge", "incident_ack", "7")]},
        ],
    )
    page = sandbox.messages_in("C0INCIDENT")[0]
    result = platform.click(page.button("incident_ack"), user="U0PRIMARY")
    assert result.status == 200 and result.text == ""
    edited = sandbox.wait_for(lambda: [m for m in sandbox.messages_in("C0INCIDENT") if m.edited])
    assert edited[0].text == "Acknowledged by <@U0PRIMARY>"
    body, action = seen["body"], seen["action"]
    assert (action["action_id"], action["value"], action["type"]) == ("incident_ack", "7", "button")
    assert body["user"]["id"] == "U0PRIMARY" and body["channel"]["id"] == "C0INCIDENT"
    assert body["container"]["message_ts"] == posted["ts"] and body["message"]["ts"] == posted["ts"]
    assert body["container"]["is_ephemeral"] is False and body["trigger_id"]


def test_clicking_a_button_in_an_ephemeral_reply(sandbox, bolt):
    app, platform, seen = bolt

    @app.command("/incident")
    def propose(ack, respond):
        ack()
        respond(
            text="Roll back?",
            blocks=[{"type": "actions", "elements": [button("Confirm", "rollback_confirm", "rev-1")]}],
        )

    @app.action("rollback_confirm")
    def confirm(ack, body, respond):
        ack()
        seen["body"] = body
        respond(replace_original=True, text="Rolled back to rev-1")

    proposal = platform.command("rollback", user="U0LEAD").wait_response()
    platform.click(proposal.button("rollback_confirm"), user="U0LEAD")
    sandbox.wait_for(lambda: "body" in seen)
    assert seen["body"]["container"]["is_ephemeral"] is True and "message" not in seen["body"]
    assert seen["body"]["actions"][0]["value"] == "rev-1"
    shown = sandbox.wait_for_ephemeral("U0LEAD", "Rolled back")
    assert shown.edited and sandbox.messages_in("C0INCIDENT") == []  # replaced in place, never public


def test_wait_for_fails_with_the_transcript(sandbox, client):
    client.chat_postMessage(channel="C0INCIDENT", text="something else")
    with pytest.raises(AssertionError, match=r"(?s)waiting for a message.*incident-bot: something else"):
        sandbox.wait_for_message("C0INCIDENT", contains="INC-9", timeout=0.05)
    with pytest.raises(AssertionError, match="incident_ack"):
        sandbox.wait_for_dm("U0PRIMARY", with_button="incident_ack", timeout=0.05)


def test_view_submission_state_reaches_bolt_and_closes_the_modal(sandbox, client, bolt):
    app, platform, seen = bolt

    @app.view("declare")
    def on_submit(ack, view, body):
        seen["view"], seen["user"] = view, body["user"]["id"]
        title = view["state"]["values"]["title"]["value"]["value"]
        if not title.strip():
            ack(response_action="errors", errors={"title": "A title, please"})
        else:
            ack()

    opened = client.views_open(trigger_id=sandbox.issue_trigger_id("U0LEAD"), view=MODAL)["view"]
    rejected = platform.submit_view(opened, {"title": " ", "severity": "p2"})
    assert rejected.response_action == "errors" and sandbox.is_view_open(opened["id"])
    result = platform.submit_view(opened, {"title": "Checkout down", "severity": "p1"})
    assert result.status == 200 and not sandbox.is_view_open(opened["id"])
    values = seen["view"]["state"]["values"]
    assert values["title"]["value"] == {"type": "plain_text_input", "value": "Checkout down"}
    assert values["severity"]["value"]["selected_option"]["value"] == "p1"
    assert seen["view"]["private_metadata"] == "C0INCIDENT" and seen["user"] == "U0LEAD"
    with pytest.raises(ValueError, match="p9"):
        platform.submit_view(opened, {"severity": "p9"})


def test_response_url_refuses_invalid_blocks(sandbox):
    url = sandbox.response_url("k1", channel="C0INCIDENT", user="U0PRIMARY")
    body = json.dumps({"text": "t", "blocks": [section("x" * 3001)]}).encode()
    status, _, raw = raw_post(url, body, {"Content-Type": "application/json"})
    assert (status, raw) == (400, b"invalid_blocks")
    assert [c.method for c in sandbox.refusals()] == ["response_url"]
    assert sandbox.responses("k1") == []


# ---- transcript ------------------------------------------------------------------------------


def test_transcript_reads_like_the_slack_client(sandbox, client, bolt):
    app, platform, _ = bolt
    app.command("/incident")(lambda ack: ack("Declared INC-7."))
    platform.command("declare p1 Checkout & cart", user="U0PRIMARY")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "INC-7 Checkout"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": "*Severity:* P1"},
                {"type": "mrkdwn", "text": "*By:* <@U0PRIMARY>"},
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "in <#C0INCIDENT>"}]},
        {
            "type": "actions",
            "elements": [button("Acknowledge", "incident_ack"), button("Post update", "upd")],
        },
    ]
    parent = client.chat_postMessage(channel="C0INCIDENT", text="INC-7", blocks=blocks)
    client.chat_postMessage(channel="C0INCIDENT", thread_ts=parent["ts"], text="Paged <@U0PRIMARY> &amp; more")
    client.chat_update(channel="C0INCIDENT", ts=parent["ts"], text="INC-7", blocks=blocks[:2])
    client.chat_postMessage(channel="U0PRIMARY", text="You are paged")
    assert render(sandbox) == "\n".join(
        [
            "#incident-response",
            "  @primary ran /incident declare p1 Checkout & cart",
            "  (only visible to @primary) incident-bot: Declared INC-7.",
            "  incident-bot: INC-7 Checkout (edited)",
            "      *Severity:* P1  |  *By:* @primary",
            "    ↳ incident-bot: Paged @primary & more",
            "",
            "DM → @primary",
            "  incident-bot: You are paged",
        ]
    )
