"""The Slack platform's half of the wire: signed requests from "Slack" to a running bot.

Real Slack sends an app three kinds of request this bot cares about, all to one URL
(`/slack/events`) and all signed with the app's signing secret: slash commands (a form body),
and `block_actions` / `view_submission` interactions (a form body whose `payload` field is
JSON). `SlackPlatform` builds exactly those bodies, takes the response_url and trigger_id from
the `SlackSandbox` (so the bot's later `respond()` and `views.open` land in the same world), and
then does with the bot's answer what Slack does: shows a command's ack to the user, closes or
updates a modal after a submission.

    platform = SlackPlatform("http://127.0.0.1:3000/slack/events", "secret", sandbox)
    result = platform.command("declare p1 Checkout down", user="U0PRIMARY")
    assert result.status == 200
    page = sandbox.wait_for_dm("U0PRIMARY", with_button="incident_ack")
    platform.click(page.button("incident_ack"), user="U0PRIMARY")
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from bot.sandbox.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.constants import APP_ID, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID
from bot.sandbox.slack.workspace import Conversation, ResponsePost

ACK_DEADLINE_SECONDS = 3.0  # Slack shows the user an error when an app takes longer to answer
VERIFICATION_TOKEN = "sandbox-verification-token"


@dataclass
class PlatformResult:
    """The bot's answer to one request from "Slack", and the response_url replies that follow."""

    status: int
    body: Any  # parsed JSON when the bot answered JSON, else the raw text
    headers: dict[str, str]
    elapsed: float
    sandbox: SlackSandbox = field(repr=False)
    response_key: str | None = None
    trigger_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, repr=False)  # what was sent

    @property
    def text(self) -> str:
        """The ack's text ("" when the bot acked with an empty body)."""
        if isinstance(self.body, dict):
            return str(self.body.get("text") or "")
        return self.body or ""

    @property
    def blocks(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("blocks"), list):
            return self.body["blocks"]
        return []

    @property
    def response_action(self) -> str | None:
        """For a view_submission: "errors", "update", "push", "clear" or None (close)."""
        return self.body.get("response_action") if isinstance(self.body, dict) else None

    @property
    def timed_out(self) -> bool:
        """Slack would have told the user the app did not answer in time."""
        return self.elapsed > ACK_DEADLINE_SECONDS

    def responses(self, timeout: float = 0.0) -> list[ResponsePost]:
        """Posts to this request's response_url; waits up to `timeout` for the first one."""
        if self.response_key is None:
            return []
        key = self.response_key
        if timeout > 0:
            try:
                self.sandbox.wait_for(lambda: self.sandbox.responses(key), timeout)
            except AssertionError:
                return []
        return self.sandbox.responses(key)

    def wait_response(
        self, predicate: Callable[[ResponsePost], bool] | None = None, timeout: float = 15.0
    ) -> ResponsePost:
        """The first response_url post (matching `predicate`), waiting for it to arrive."""
        if self.response_key is None:
            raise AssertionError("this request had no response_url")
        key = self.response_key

        def found() -> ResponsePost | None:
            for post in self.sandbox.responses(key):
                if predicate is None or predicate(post):
                    return post
            return None

        return self.sandbox.wait_for(found, timeout, f"a response_url post for {key}")


CommandResult = PlatformResult
InteractionResult = PlatformResult


class SlackPlatform:
    """Sends a bot the signed requests Slack would, as the people in the sandbox's workspace."""

    def __init__(
        self,
        bot_url: str,
        signing_secret: str,
        sandbox: SlackSandbox,
        team_id: str = TEAM_ID,
        *,
        api_app_id: str = APP_ID,
        verification_token: str = VERIFICATION_TOKEN,
        timeout: float = 10.0,
    ) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.sandbox = sandbox
        self.team_id = team_id
        self.api_app_id = api_app_id
        self.verification_token = verification_token
        self.timeout = timeout

    # ---- slash commands ----------------------------------------------------------------------

    def command(
        self,
        text: str,
        user: str = "U0PRIMARY",
        channel: str = "C0INCIDENT",
        command: str = "/incident",
        *,
        sign: bool = True,
        signature: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> PlatformResult:
        """Run `/incident <text>` as `user` in `channel`; Slack shows the ack to the user.

        `text` is what the person types; the bot receives it as Slack sends it (`slash_wire_text`).
        """
        conv = self._conversation(channel)
        key = self.sandbox.new_response_key()
        response_url = self.sandbox.response_url(key, channel=conv.id, user=user)
        trigger_id = self.sandbox.issue_trigger_id(user)
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": conv.id,
            "channel_name": _channel_name(conv),
            "user_id": user,
            "user_name": self._user_name(user),
            "command": command,
            "text": slash_wire_text(self.sandbox, text),
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        self.sandbox.record_interaction("command", user, conv.id, f"{command} {text}".rstrip())
        result = self.send(
            urlencode(form),
            sign=sign,
            signature=signature,
            timestamp=timestamp,
            headers=headers,
        )
        result.response_key, result.trigger_id, result.payload = key, trigger_id, form
        if result.status == 200 and not result.timed_out:
            if isinstance(result.body, dict):
                self.sandbox.record_ack(key, result.body)
            elif result.text:
                # Slack shows a plain-text ack body as the reply text.
                self.sandbox.record_ack(key, {"text": result.text})
        else:
            self._tell_user_it_failed(conv.id, user, command, result)
        return result

    # ---- interactivity -----------------------------------------------------------------------

    def click(
        self,
        button: dict[str, Any] | str | None = None,
        *,
        action_id: str | None = None,
        value: str | None = None,
        user: str = "U0PRIMARY",
        channel: str | None = None,
        message_ts: str | None = None,
        block_id: str | None = None,
        sign: bool = True,
        signature: str | None = None,
        timestamp: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> PlatformResult:
        """Click a button: one from `Message.buttons()`, or the newest one with `action_id`.

        With `action_id` *and* `value` (and no message found) the click is sent as if from a
        message the sandbox does not know, which is how a test fakes a forged or stale button.
        """
        if isinstance(button, str):
            action_id, button = button, None
        if button is None:
            if action_id is None:
                raise ValueError("click() needs a button dict or an action_id")
            try:
                button = self.sandbox.find_button(action_id, channel=channel, user=user)
            except AssertionError:
                if value is None:
                    raise
                button = {"action_id": action_id, "value": value, "text": action_id}
        button = {**button}
        if value is not None:
            button["value"] = value
        if block_id is not None:
            button["block_id"] = block_id
        conv = self._conversation(channel or button.get("channel") or "C0INCIDENT")
        ts = message_ts or button.get("message_ts") or self.sandbox.new_ts()
        is_ephemeral = bool(button.get("is_ephemeral"))
        key = self.sandbox.new_response_key()
        response_url = self.sandbox.response_url(
            key,
            channel=conv.id,
            user=user,
            message_ts=ts,
            is_ephemeral=is_ephemeral,
            thread_ts=button.get("thread_ts"),
        )
        trigger_id = self.sandbox.issue_trigger_id(user)
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": ts,
            "channel_id": conv.id,
            "is_ephemeral": is_ephemeral,
        }
        if button.get("thread_ts"):
            container["thread_ts"] = button["thread_ts"]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user_obj(user),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": trigger_id,
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": conv.id, "name": _channel_name(conv)},
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [
                {
                    "action_id": button.get("action_id"),
                    "block_id": button.get("block_id") or "sandbox",
                    "text": {"type": "plain_text", "text": button.get("text") or "", "emoji": True},
                    "value": button.get("value"),
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                    **({"style": button["style"]} if button.get("style") else {}),
                }
            ],
        }
        # Slack sends the whole message with a click on a normal message, not on an ephemeral one.
        if not is_ephemeral:
            message = next((m for m in self.sandbox.messages_in(conv.id) if m.ts == ts), None)
            if message is not None:
                payload["message"] = message.to_api()
        self.sandbox.record_interaction("click", user, conv.id, f"[{button.get('text') or action_id}]")
        result = self._send_payload(payload, sign, signature, timestamp, headers)
        result.response_key, result.trigger_id = key, trigger_id
        return result

    def submit_view(
        self,
        view: dict[str, Any],
        values: dict[str, Any] | None = None,
        user: str | None = None,
        *,
        sign: bool = True,
        signature: str | None = None,
        timestamp: int | None = None,
    ) -> PlatformResult:
        """Submit a modal (as returned by views.open) with `values` typed into its inputs.

        `values` is keyed by action_id, block_id or "block_id.action_id"; a value is a string
        (text input, select or radio option value, user ID) or a list (checkboxes, multi-selects).
        """
        user = user or self.sandbox.view_user(view["id"]) or "U0PRIMARY"
        state = view_state(view, values or {})
        submitted = {**view, "state": {"values": state}}
        payload: dict[str, Any] = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "user": self._user_obj(user),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self.sandbox.issue_trigger_id(user),
            "view": submitted,
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        title = (view.get("title") or {}).get("text") or view.get("callback_id") or "a form"
        self.sandbox.record_interaction("submit", user, None, f'submitted "{title}"')
        result = self._send_payload(payload, sign, signature, timestamp, None)
        result.trigger_id = payload["trigger_id"]
        self.sandbox.apply_view_response(view["id"], result.status, result.body)
        return result

    # ---- Events API --------------------------------------------------------------------------

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> PlatformResult:
        """Deliver an Events API `event_callback` (JSON), as a retry when `retry_num` is given.

        Slack retries an event it thinks went unanswered with the same `event_id` and the headers
        `X-Slack-Retry-Num` and `X-Slack-Retry-Reason`.
        """
        now = time.time()
        envelope = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": {"event_ts": f"{now:.6f}", **event},
            "type": "event_callback",
            "event_id": event_id or f"Ev{self.sandbox.new_response_key().upper()}{int(now)}",
            "event_time": int(now),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": BOT_USER_ID,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        result = self.send(json.dumps(envelope), content_type="application/json", headers=headers)
        result.payload = envelope
        return result

    def react(
        self,
        user: str,
        channel: str,
        ts: str,
        reaction: str = "pushpin",
        *,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> PlatformResult:
        """`user` adds `reaction` to the message `ts`; Slack tells the app with `reaction_added`."""
        conv = self._conversation(channel)
        author = next((m.user for m in self.sandbox.messages_in(conv.id) if m.ts == ts), None)
        if retry_num is None:
            self.sandbox.record_interaction("react", user, conv.id, f"reacted :{reaction}: to a message")
        event = {
            "type": "reaction_added",
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": conv.id, "ts": ts},
        }
        if author:
            event["item_user"] = author
        return self.event(event, event_id=event_id, retry_num=retry_num)

    def member_joined(
        self,
        channel: str,
        user: str,
        *,
        inviter: str | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> PlatformResult:
        """`user` joins `channel` (invited by `inviter`, else by themselves); Slack tells the app
        with `member_joined_channel` (channel_type C public, G private; `inviter` only when
        someone invited them)."""
        conv = self._conversation(channel)
        self.sandbox.invite(conv.id, user)
        if retry_num is None:
            self.sandbox.record_interaction("join", user, conv.id, "joined the channel")
        event: dict[str, Any] = {
            "type": "member_joined_channel",
            "user": user,
            "channel": conv.id,
            "channel_type": "G" if conv.is_private else "C",
            "team": self.team_id,
        }
        if inviter:
            event["inviter"] = inviter
        return self.event(event, event_id=event_id, retry_num=retry_num)

    def home_opened(self, user: str, *, event_id: str | None = None) -> PlatformResult:
        """`user` opens the app's Home tab; Slack tells the app with `app_home_opened` (tab
        `home`), with the view last published to them, if any."""
        dm = self.sandbox.open_dm(user)
        event: dict[str, Any] = {"type": "app_home_opened", "user": user, "channel": dm.id, "tab": "home"}
        published = self.sandbox.home_view(user)
        if published is not None:
            event["view"] = published
        self.sandbox.record_interaction("home", user, None, "opened the app's Home tab")
        return self.event(event, event_id=event_id)

    def click_home(self, user: str, action_id: str, value: str | None = None) -> PlatformResult:
        """Press a button on `user`'s Home tab (the one with `action_id`, and `value` if given).

        A Home tab interaction has a `view` container and carries the view, but no channel and
        no response_url: Slack gives an app nowhere to reply but the tab itself."""
        view = self.sandbox.home_view(user)
        if view is None:
            raise AssertionError(f"nothing is published on {user}'s Home tab")
        found = [
            (block, element)
            for block in view.get("blocks") or []
            for element in [block.get("accessory"), *(block.get("elements") or [])]
            if isinstance(element, dict)
            and element.get("type") == "button"
            and element.get("action_id") == action_id
            and (value is None or element.get("value") == value)
        ]
        if not found:
            raise AssertionError(f"no {action_id} button (value {value!r}) on {user}'s Home tab")
        block, button = found[0]
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": self._user_obj(user),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": self.sandbox.issue_trigger_id(user),
            "team": {"id": self.team_id, "domain": TEAM_DOMAIN},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block.get("block_id") or "home",
                    "text": button.get("text") or {"type": "plain_text", "text": action_id},
                    "value": button.get("value"),
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        self.sandbox.record_interaction("click", user, None, f"[{(button.get('text') or {}).get('text')}] on Home")
        return self._send_payload(payload, True, None, None, None)

    # ---- transport ---------------------------------------------------------------------------

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
        """POST a raw body to the bot, signed like Slack unless told otherwise (security tests)."""
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if sign:
            all_headers.update(_sign(self.signing_secret, body, timestamp))
        elif timestamp is not None:
            all_headers[TIMESTAMP_HEADER] = str(timestamp)
        if signature is not None:
            all_headers[SIGNATURE_HEADER] = signature
            all_headers.setdefault(TIMESTAMP_HEADER, str(timestamp or int(time.time())))
        all_headers.update(headers or {})
        request = urllib.request.Request(self.bot_url, data=body.encode("utf-8"), headers=all_headers, method="POST")
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw, got = response.status, response.read(), dict(response.headers.items())
        except urllib.error.HTTPError as exc:
            status, raw, got = exc.code, exc.read(), dict(exc.headers.items())
        elapsed = time.monotonic() - started
        text = raw.decode("utf-8", errors="replace")
        parsed: Any = text
        content_type = got.get("Content-Type") or got.get("content-type") or ""
        if "json" in content_type and text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
        return PlatformResult(status, parsed, got, elapsed, self.sandbox)

    def _send_payload(
        self,
        payload: dict[str, Any],
        sign: bool,
        signature: str | None,
        timestamp: int | None,
        headers: dict[str, str] | None,
    ) -> PlatformResult:
        body = urlencode({"payload": json.dumps(payload)})
        result = self.send(body, sign=sign, signature=signature, timestamp=timestamp, headers=headers)
        result.payload = payload
        return result

    # ---- helpers -----------------------------------------------------------------------------

    def _conversation(self, ref: str) -> Conversation:
        if self.sandbox.user(ref) is not None:
            return self.sandbox.open_dm(ref)  # a user ID: their DM with the bot
        conv = self.sandbox.conversation(ref)
        if conv is None:
            raise ValueError(f"no conversation {ref!r} in the sandbox")
        return conv

    def _user_name(self, user: str) -> str:
        known = self.sandbox.user(user)
        return known.name if known else user.lower()

    def _user_obj(self, user: str) -> dict[str, str]:
        name = self._user_name(user)
        return {"id": user, "username": name, "name": name, "team_id": self.team_id}

    def _tell_user_it_failed(self, channel: str, user: str, command: str, result: PlatformResult) -> None:
        # What Slack shows the person when the app answers late or with an error status.
        reason = "operation_timeout" if result.timed_out else f"http_service_error ({result.status})"
        self.sandbox.record_platform_notice(channel, user, f'{command} failed with the error "{reason}"')


_TYPED_ENTITY = re.compile(
    r"(?P<url>\bhttps?://[^\s<>|]+)"
    r"|(?P<email>\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
    r"|(?<![\w@])@(?P<at>[\w.-]+)"
    r"|(?<![\w#&])#(?P<channel>[a-z0-9_-]+)"
)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""


def slash_wire_text(sandbox: SlackSandbox, typed: str) -> str:
    """What Slack sends as a slash command's `text` for what a person typed (`should_escape: true`).

    `&`, `<` and `>` are entity-encoded; what Slack recognises becomes an entity: `@name` of a
    workspace member `<@U…|name>`, `@handle` of a user group `<!subteam^S…|@handle>`,
    `@here`/`@channel`/`@everyone` `<!here>`…, `#name` of a
    channel `<#C…|name>`, a URL `<url>`, an email `<mailto:…|…>`. Anything else stays text.
    """
    out: list[str] = []
    pos = 0
    for match in _TYPED_ENTITY.finditer(typed):
        entity, used = _wire_entity(sandbox, match)
        if entity is not None:
            out.append(_encode(typed[pos : match.start()]) + entity)
            pos = match.start() + used
    out.append(_encode(typed[pos:]))
    return "".join(out)


def _wire_entity(sandbox: SlackSandbox, match: re.Match[str]) -> tuple[str | None, int]:
    """(the entity Slack would send for this match, how many typed characters it covers)."""
    word = match.group(0)
    core = word.rstrip(_TRAILING_PUNCTUATION)
    if match.group("url"):
        return f"<{_encode(core)}>", len(core)
    if match.group("email"):
        return f"<mailto:{_encode(core)}|{_encode(core)}>", len(core)
    name = core[1:]
    if match.group("at"):
        if name in ("here", "channel", "everyone"):
            return f"<!{name}>", len(core)
        user = next((u for u in sandbox.users() if u.name == name), None)
        if user is not None:
            return f"<@{user.id}|{name}>", len(core)
        group = next((g for g in sandbox.usergroups() if g.handle == name and not g.disabled_at), None)
        return (f"<!subteam^{group.id}|@{name}>", len(core)) if group else (None, 0)
    conv = sandbox.channel_by_name(name)
    if conv is None or conv.is_im or conv.is_mpim:
        return None, 0
    return f"<#{conv.id}|{name}>", len(core)


def _encode(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _sign(secret: str, body: str, timestamp: int | None) -> dict[str, str]:
    return sign(secret, body, timestamp)


def _channel_name(conv: Conversation) -> str:
    """The channel_name Slack puts in a command: the name, or Slack's placeholder for DMs."""
    if conv.is_im:
        return "directmessage"
    if conv.is_mpim:
        return "mpdm"
    if conv.is_private:
        return "privategroup"
    return conv.name


def view_state(view: dict[str, Any], values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`view.state.values` as Slack builds it from the view's input blocks and what was typed."""
    state: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for block in view.get("blocks") or []:
        if block.get("type") != "input" or not isinstance(block.get("element"), dict):
            continue
        element = block["element"]
        block_id, action_id = block["block_id"], element["action_id"]
        for key in (f"{block_id}.{action_id}", action_id, block_id):
            if key in values:
                value, found = values[key], True
                used.add(key)
                break
        else:
            value, found = None, False
        state[block_id] = {action_id: _element_value(element, value if found else None)}
    unknown = set(values) - used
    if unknown:
        raise ValueError(f"no input in the view for {sorted(unknown)}; inputs: {sorted(state)}")
    return state


def _element_value(element: dict[str, Any], value: Any) -> dict[str, Any]:
    kind = element["type"]
    options = {o.get("value"): o for o in element.get("options") or []}

    def option(v: Any) -> dict[str, Any] | None:
        if v is None:
            return None
        if v not in options:
            raise ValueError(f"{v!r} is not an option of {element.get('action_id')}: {list(options)}")
        return options[v]

    if kind in ("static_select", "radio_buttons"):
        return {"type": kind, "selected_option": option(value)}
    if kind in ("checkboxes", "multi_static_select"):
        return {"type": kind, "selected_options": [option(v) for v in value or []]}
    if kind == "users_select":
        return {"type": kind, "selected_user": value}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(value or [])}
    if kind == "conversations_select":
        return {"type": kind, "selected_conversation": value}
    if kind == "channels_select":
        return {"type": kind, "selected_channel": value}
    if kind == "datepicker":
        return {"type": kind, "selected_date": value}
    return {"type": kind, "value": value}
