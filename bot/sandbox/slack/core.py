"""The base every part of `SlackSandbox` builds on: the workspace's state and its lock, where
the server listens, and the helpers the API families share (ids and timestamps, finding a
conversation or message, message content refused as Slack refuses it). Also `SlackError`, the
`ok: false` answer a method raises.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from bot.sandbox.slack.blockkit import INPUT_ELEMENTS, INTERACTIVE_ELEMENTS, validate_blocks
from bot.sandbox.slack.constants import BOT_USER_ID, MAX_TEXT
from bot.sandbox.slack.workspace import (
    Call,
    Conversation,
    Ephemeral,
    Interaction,
    Message,
    ResponseContext,
    ResponsePost,
    SandboxFile,
    User,
    Usergroup,
)

if TYPE_CHECKING:
    from bot.sandbox.slack.faults import _Chaos, _Fault
    from bot.sandbox.slack.server import _Server


class SlackError(Exception):
    """An `ok: false` answer; extra keyword arguments are added to the JSON."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _short_id(seed: str, length: int = 5) -> str:
    """A stable, Slack-looking generated id ("XTkTR"), for blocks and elements sent without one."""
    digest = base64.b64encode(hashlib.sha1(seed.encode()).digest()).decode()
    return "".join(c for c in digest if c.isalnum())[:length]


class SandboxCore:
    """State, the lock and shared helpers; the mixins in this package add the rest."""

    # The Web API methods by name (filled in by `SlackSandbox`, which has every family).
    _methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]

    def __init__(self, *, tokens: Iterable[str], scopes: Iterable[str], trigger_ttl: float) -> None:
        self.tokens = frozenset(tokens)
        self.app_tokens: frozenset[str] = frozenset()  # of `tokens`, the app-level ones (Socket Mode)
        self.scopes = frozenset(scopes)
        self.trigger_ttl = trigger_ttl
        self.calls: list[Call] = []
        self.errors: list[str] = []  # tracebacks of sandbox bugs, so a test can show them
        self.deleted: list[Message] = []  # messages chat.delete removed, as they were
        self._lock = threading.RLock()
        self._users: dict[str, User] = {}
        self._usergroups: dict[str, Usergroup] = {}
        self._conversations: dict[str, Conversation] = {}
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: list[Ephemeral] = []
        self._responses: list[ResponsePost] = []
        self._response_contexts: dict[str, ResponseContext] = {}
        self._interactions: list[Interaction] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[str, str] = {}  # user -> the id of their Home tab's view
        self.home_tab_enabled = True  # the app manifest's features.app_home.home_tab_enabled
        self._view_meta: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, dict[str, Any]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._holds: dict[str, float] = {}
        self._chaos: _Chaos | None = None
        # Web API calls being answered now, and when the last one was (`quiet_for`).
        self._in_flight = 0
        self._last_answered = time.monotonic()
        self._last_ts = 0.0
        self._counter = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._files: dict[str, SandboxFile] = {}
        self._upload_tokens: dict[str, str] = {}  # upload URL token -> file id
        # Slack shares a completed upload asynchronously: after this long, and not at all for the
        # next `_unshared_left` completions (`share_uploads()`).
        self._share_delay_s = 0.2
        self._unshared_left = 0

    # ---- where it listens ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SlackSandbox is not started: call start() first")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What `WebClient(base_url=...)` needs (with its trailing slash)."""
        return f"{self.base_url}/api/"

    # ---- ids and timestamps ----------------------------------------------------------------------

    def new_ts(self) -> str:
        """A fresh message ts, for things that happen outside the Web API (a forged click)."""
        with self._lock:
            return self._next_ts()

    def new_response_key(self) -> str:
        return f"r{next(self._counter)}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):09d}"

    def _next_ts(self) -> str:
        """A message ts: wall-clock seconds, strictly increasing, unique in the workspace."""
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

    # ---- helpers used by the methods (called with the lock held) ---------------------------------

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def _conversation(self, channel: Any) -> Conversation:
        """A conversation by ID, as the bot can see it (private ones only if it is a member)."""
        conv = self._conversations.get(str(channel or ""))
        if conv is None or (conv.is_private and BOT_USER_ID not in conv.members):
            raise SlackError("channel_not_found")
        return conv

    def _post_target(self, channel: Any) -> Conversation:
        """chat.postMessage also takes "#name", "name" and a user ID (the bot's DM with them)."""
        ref = str(channel or "").strip()
        if ref in self._users:
            return self._open_im(ref)[0]
        if ref in self._conversations:
            return self._conversation(ref)
        found = self._by_name(ref.lstrip("#"))
        if found is None:
            raise SlackError("channel_not_found")
        return self._conversation(found.id)

    def _by_name(self, name: str) -> Conversation | None:
        for conv in self._conversations.values():
            if not conv.is_im and conv.name == name:
                return conv
        return None

    def _open_im(self, user_id: str) -> tuple[Conversation, bool]:
        """The bot's IM with `user_id`, created on first use; (conversation, already_open)."""
        if user_id not in self._users:
            raise SlackError("user_not_found")
        im_id = "D" + user_id[1:]  # stable per user, and readable: U0PRIMARY -> D0PRIMARY
        if im_id in self._conversations:
            return self._conversations[im_id], True
        conv = Conversation(
            id=im_id,
            name=user_id,
            members=(BOT_USER_ID, user_id),
            is_channel=False,
            is_private=True,
            is_im=True,
            created=int(time.time()),
            user=user_id,
        )
        self._conversations[im_id] = conv
        self._messages[im_id] = []
        return conv, False

    def _require_postable(self, conv: Conversation) -> None:
        if conv.is_archived:
            raise SlackError("is_archived")
        if BOT_USER_ID in conv.members:
            return
        if not conv.is_private and "chat:write.public" in self.scopes:
            return
        raise SlackError("not_in_channel")

    def _json_param(self, params: dict[str, Any], key: str, error: str) -> Any:
        """A structured param: already parsed in a JSON body, a JSON string in a form body."""
        value = params.get(key)
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise SlackError(error) from exc
            params[key] = value
        return value

    def _message_content(
        self, params: dict[str, Any], *, required: bool = True
    ) -> tuple[str | None, list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
        """(text, blocks, attachments) from params, refused as real Slack refuses them."""
        blocks = self._json_param(params, "blocks", "invalid_blocks_format")
        attachments = self._json_param(params, "attachments", "invalid_attachments")
        if blocks is not None and not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        if attachments is not None and not isinstance(attachments, list):
            raise SlackError("invalid_attachments")
        text = params.get("text")
        text = None if text is None else str(text)
        if required and not text and not blocks and not attachments:
            raise SlackError("no_text")
        if text is not None and len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        if blocks:
            errors = validate_blocks(blocks)
            if errors:
                raise SlackError(
                    "invalid_blocks",
                    errors=errors,
                    response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
                )
        return text, blocks, attachments

    @staticmethod
    def _fill_ids(blocks: list[dict[str, Any]] | None, seed: str) -> list[dict[str, Any]]:
        """Slack gives every block a block_id and every element an action_id if it has none."""
        blocks = copy.deepcopy(blocks or [])
        for i, block in enumerate(blocks):
            block.setdefault("block_id", _short_id(f"{seed}/{i}"))
            elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
            for extra in ("accessory", "element"):
                if isinstance(block.get(extra), dict):
                    elements.append(block[extra])
            for j, element in enumerate(elements):
                if isinstance(element, dict) and element.get("type") in (INTERACTIVE_ELEMENTS | INPUT_ELEMENTS):
                    element.setdefault("action_id", _short_id(f"{seed}/{i}/{j}"))
        return blocks

    def _find_message(self, channel: str, ts: Any) -> tuple[int, Message]:
        for i, msg in enumerate(self._messages.get(channel, [])):
            if msg.ts == str(ts):
                return i, msg
        raise SlackError("message_not_found")

    def _add_message(self, msg: Message) -> Message:
        self._messages.setdefault(msg.channel, []).append(msg)
        return msg

    # ---- what one mixin calls in another ---------------------------------------------------------
    # Declared for the type checker only, so that each mixin checks on its own; the mixin named
    # in the comment implements it, and `SlackSandbox` has them all.
    if TYPE_CHECKING:
        # World
        def add_channel(
            self,
            name: str,
            *,
            id: str | None = None,  # noqa: A002
            members: Iterable[str] = (BOT_USER_ID,),
            is_private: bool = False,
            is_general: bool = False,
            topic: str = "",
            purpose: str = "",
        ) -> Conversation: ...

        # Inspection
        def conversation(self, ref: str) -> Conversation | None: ...

        # RateLimits
        def _limit(self, method: str, params: dict[str, Any]) -> int | None: ...

        # Faults
        def _take_faults(self, method: str) -> tuple[float, _Fault | None]: ...

        def _chaos_fault(self) -> tuple[_Fault | None, float]: ...

        def _answer_fault(
            self, method: str, params: dict[str, Any], fault: _Fault
        ) -> tuple[int, dict[str, str], bytes]: ...

        # Responses
        def _handle_response_url(
            self, key: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]: ...

        # FilesMethods
        def _handle_upload(
            self, token: str, headers: dict[str, str], body: bytes
        ) -> tuple[int, dict[str, str], bytes]: ...
