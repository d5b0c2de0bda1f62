"""A Slack Web API emulator: a real HTTP server that answers the bot's `slack_sdk` calls.

The sandbox is the "world" the bot lives in during the demo and the end-to-end tests: users,
channels, DMs, messages, ephemeral messages, modals and `response_url` replies. It speaks
Slack's wire format (form or JSON bodies, `ok`/`error` JSON answers, HTTP 429 with
`Retry-After`) and refuses what real Slack refuses (Block Kit limits, channel name rules,
membership), so a test can assert the bot never sends anything Slack would reject.

    with SlackSandbox() as slack:
        client = WebClient(token="xoxb-sandbox", base_url=slack.api_url)
        client.chat_postMessage(channel="#incident-response", text="hello")
        assert slack.messages_in("incident-response")[0].text == "hello"
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import random
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

T = TypeVar("T")

TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "sandbox"
TEAM_NAME = "Sandbox"
APP_ID = "A0SANDBOX"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "incident-bot"
SLACKBOT_ID = "USLACKBOT"

DEFAULT_TOKENS = frozenset({"xoxb-sandbox"})
# What a typical incident bot installs with. `chat:write.public` is deliberately absent: the
# bot must join or be invited to a channel before posting there, as most real installs require.
DEFAULT_SCOPES = frozenset(
    {
        "chat:write",
        "commands",
        "channels:read",
        "channels:history",
        "channels:join",
        "channels:manage",
        "groups:read",
        "groups:history",
        "groups:write",
        "im:read",
        "im:history",
        "im:write",
        "mpim:write",
        "users:read",
        "users:read.email",
        "usergroups:read",
        "files:read",
        "files:write",
        "reactions:read",
    }
)

# The scope each method needs (public-channel flavour; the sandbox does not model per-type scopes).
METHOD_SCOPES: dict[str, str | None] = {
    "api.test": None,
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.getPermalink": None,
    "conversations.create": "channels:manage",
    "conversations.setTopic": "channels:manage",
    "conversations.setPurpose": "channels:manage",
    "conversations.invite": "channels:manage",
    "conversations.join": "channels:join",
    "conversations.info": "channels:read",
    "conversations.open": "im:write",
    "conversations.archive": "channels:manage",
    "conversations.history": "channels:history",
    "conversations.replies": "channels:history",
    "conversations.members": "channels:read",
    "conversations.list": "channels:read",
    "users.info": "users:read",
    "users.lookupByEmail": "users:read.email",
    "usergroups.list": "usergroups:read",
    "usergroups.users.list": "usergroups:read",
    "views.open": None,
    "views.update": None,
    "views.push": None,
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.info": "files:read",
}

# Errors that mean "the request itself was wrong": a correct bot never gets these. Left out on
# purpose: name_taken, already_in_channel, users_not_found (a bot may legitimately probe for
# them and recover) and anything injected with `error()`/`fail()`.
REFUSAL_ERRORS = frozenset(
    {
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_attachments",
        "invalid_arguments",
        "msg_too_long",
        "no_text",
        "too_long",
        "invalid_name_required",
        "invalid_name_maxlength",
        "invalid_name_specials",
        "invalid_name_punctuation",
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "user_not_in_channel",
        "cant_update_message",
        "cant_invite_self",
        "message_not_found",
        "user_not_found",
        "invalid_trigger_id",
        "expired_trigger_id",
        "exchanged_trigger_id",
        "missing_scope",
        "not_authed",
        "invalid_auth",
        "unknown_method",
        "no_service",
        "invalid_payload",
    }
)

MAX_TEXT = 40_000
MAX_TOPIC = 250
MAX_CHANNEL_NAME = 80
TRIGGER_TTL_SECONDS = 3.0  # Slack: a trigger_id expires three seconds after it is issued
MAX_VIEW_STACK = 3

SEED_USERS: tuple[tuple[str, str, str, str], ...] = (
    # id, name, real name, email
    ("U0PRIMARY", "primary", "Pat Primary", "primary@example.com"),
    ("U0SECOND", "second", "Sam Second", "second@example.com"),
    ("U0VP", "vp", "Val Product", "vp@example.com"),
    ("U0CEO", "ceo", "Chris Exec", "ceo@example.com"),
    ("U0LEAD", "lead", "Lee Lead", "lead@example.com"),
    ("U0SUPPORT", "support", "Sue Support", "support@example.com"),
    ("U0ALICE", "alice", "Alice Example", "alice@example.com"),
    ("U0BOB", "bob", "Bob Example", "bob@example.com"),
)


# --------------------------------------------------------------------------------------------
# Block Kit validation: one table of rules per block and element type.
#
# A rule is (path, check, argument). `path` walks the object: "text.text" is a nested key,
# "fields[]" each item of a list, "" the object itself. Adding a limit is one line in a table.
# Messages read like Slack's: "must be less than 3001 characters [json-pointer:/blocks/0/text/text]".
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One Block Kit constraint: `check` applied with `arg` to what `path` selects."""

    path: str
    check: str
    arg: Any = None


R = Rule
TEXT_TYPES = ("plain_text", "mrkdwn")
INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "static_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "overflow",
        "datepicker",
        "radio_buttons",
        "checkboxes",
        "multi_static_select",
        "multi_users_select",
    }
)
INPUT_ELEMENTS = frozenset(
    {
        "plain_text_input",
        "static_select",
        "radio_buttons",
        "checkboxes",
        "users_select",
        "multi_users_select",
        "multi_static_select",
        "conversations_select",
        "channels_select",
        "datepicker",
        "number_input",
    }
)
CONTEXT_ELEMENTS = frozenset({"plain_text", "mrkdwn", "image"})
ACCESSORY_ELEMENTS = INTERACTIVE_ELEMENTS | {"image"}

OPTION_RULES: tuple[Rule, ...] = (
    R("text", "required"),
    R("text", "text_object"),
    R("text.text", "max_chars", 75),
    R("value", "required"),
    R("value", "max_chars", 150),
)
# The "are you sure?" dialog a button may carry (composition objects: confirmation dialog).
CONFIRM_RULES: tuple[Rule, ...] = tuple(
    rule
    for field, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30))
    for rule in (R(field, "required"), R(field, "plain_text"), R(f"{field}.text", "max_chars", limit))
) + (R("style", "enum", ("primary", "danger")),)

BLOCK_RULES: dict[str, tuple[Rule, ...]] = {
    "section": (
        R("", "any_of", ("text", "fields")),
        R("text", "text_object"),
        R("text.text", "max_chars", 3000),
        R("fields", "max_items", 10),
        R("fields[]", "text_object"),
        R("fields[].text", "max_chars", 2000),
        R("accessory", "element", ACCESSORY_ELEMENTS),
    ),
    "header": (
        R("text", "required"),
        R("text", "plain_text"),
        R("text.text", "max_chars", 150),
    ),
    "context": (
        R("elements", "required"),
        R("elements", "max_items", 10),
        R("elements[]", "element", CONTEXT_ELEMENTS),
    ),
    "actions": (
        R("elements", "required"),
        R("elements", "max_items", 25),
        R("elements[]", "element", INTERACTIVE_ELEMENTS),
        R("elements", "unique", "action_id"),
    ),
    "divider": (),
    "image": (
        R("image_url", "required"),
        R("image_url", "max_chars", 3000),
        R("alt_text", "required"),
        R("alt_text", "max_chars", 2000),
        R("title", "plain_text"),
        R("title.text", "max_chars", 2000),
    ),
    "rich_text": (R("elements", "required"),),
    "input": (
        R("label", "required"),
        R("label", "plain_text"),
        R("label.text", "max_chars", 2000),
        R("element", "required"),
        R("element", "element", INPUT_ELEMENTS),
        R("hint", "plain_text"),
        R("hint.text", "max_chars", 2000),
    ),
}
COMMON_BLOCK_RULES: tuple[Rule, ...] = (R("block_id", "max_chars", 255),)

_PLACEHOLDER = (R("placeholder", "plain_text"), R("placeholder.text", "max_chars", 150))
ELEMENT_RULES: dict[str, tuple[Rule, ...]] = {
    "plain_text": (R("", "text_object"), R("text", "max_chars", 3000)),
    "mrkdwn": (R("", "text_object"), R("text", "max_chars", 3000)),
    "image": (R("image_url", "required"), R("alt_text", "required")),
    "button": (
        R("text", "required"),
        R("text", "plain_text"),
        R("text.text", "max_chars", 75),
        R("value", "max_chars", 2000),
        R("url", "max_chars", 3000),
        R("style", "enum", ("primary", "danger")),
        R("confirm", "object", CONFIRM_RULES),
    ),
    "plain_text_input": (
        *_PLACEHOLDER,
        R("initial_value", "max_chars", 3000),
        R("max_length", "max_number", 3000),
    ),
    "number_input": (R("is_decimal_allowed", "required"), *_PLACEHOLDER),
    "static_select": (
        *_PLACEHOLDER,
        R("options", "max_items", 100),
        R("options[]", "object", OPTION_RULES),
    ),
    "multi_static_select": (
        *_PLACEHOLDER,
        R("options", "max_items", 100),
        R("options[]", "object", OPTION_RULES),
    ),
    "overflow": (
        R("options", "required"),
        R("options", "max_items", 5),
        R("options[]", "object", OPTION_RULES),
    ),
    "radio_buttons": (
        R("options", "required"),
        R("options", "max_items", 10),
        R("options[]", "object", OPTION_RULES),
    ),
    "checkboxes": (
        R("options", "required"),
        R("options", "max_items", 10),
        R("options[]", "object", OPTION_RULES),
    ),
    "users_select": _PLACEHOLDER,
    "multi_users_select": _PLACEHOLDER,
    "conversations_select": _PLACEHOLDER,
    "channels_select": _PLACEHOLDER,
    "datepicker": _PLACEHOLDER,
}
COMMON_INTERACTIVE_RULES: tuple[Rule, ...] = (R("action_id", "max_chars", 255),)

VIEW_RULES: tuple[Rule, ...] = (
    R("type", "required"),
    R("type", "enum", ("modal", "home")),
    R("title", "plain_text"),
    R("title.text", "max_chars", 24),
    R("submit", "plain_text"),
    R("submit.text", "max_chars", 24),
    R("close", "plain_text"),
    R("close.text", "max_chars", 24),
    R("callback_id", "max_chars", 255),
    R("private_metadata", "max_chars", 3000),
    R("external_id", "max_chars", 255),
    R("blocks", "required"),
)
MODAL_RULES: tuple[Rule, ...] = (R("title", "required"),)


@dataclass(frozen=True)
class Surface:
    """Where blocks are shown: which block types are allowed and how many."""

    name: str
    max_blocks: int
    block_types: frozenset[str]


MESSAGE = Surface("message", 50, frozenset(BLOCK_RULES) - {"input"})
MODAL = Surface("modal", 100, frozenset(BLOCK_RULES))


def _resolve(obj: Any, pointer: str, path: str) -> list[tuple[Any, str]]:
    """The (value, json-pointer) pairs `path` selects in `obj`; missing keys select nothing."""
    nodes = [(obj, pointer)]
    if not path:
        return nodes
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        found: list[tuple[Any, str]] = []
        for node, ptr in nodes:
            if not isinstance(node, dict) or node.get(key) is None:
                continue
            value, here = node[key], f"{ptr}/{key}"
            if not many:
                found.append((value, here))
            elif isinstance(value, list):
                found.extend((item, f"{here}/{i}") for i, item in enumerate(value))
        nodes = found
    return nodes


def _err(message: str, pointer: str) -> str:
    return f"{message} [json-pointer:{pointer}]"


def _check_text_object(value: Any, ptr: str, types: tuple[str, ...]) -> list[str]:
    if not isinstance(value, dict):
        return [_err("must provide an object", ptr)]
    if value.get("type") not in types:
        return [_err("must be a valid enum value", f"{ptr}/type")]
    text = value.get("text")
    if not isinstance(text, str):
        return [_err("missing required field: text", ptr)]
    if not text:
        return [_err("must be more than 0 characters", f"{ptr}/text")]
    return []


def _run_rules(obj: Any, pointer: str, rules: Iterable[Rule]) -> list[str]:
    errors: list[str] = []
    for rule in rules:
        if rule.check == "required":
            value = obj.get(rule.path) if isinstance(obj, dict) else None
            if value is None or value == "" or value == []:
                errors.append(_err(f"missing required field: {rule.path}", pointer))
            continue
        if rule.check == "any_of":
            if not any(isinstance(obj, dict) and obj.get(k) for k in rule.arg):
                errors.append(_err(f"missing required field: {' or '.join(rule.arg)}", pointer))
            continue
        for value, ptr in _resolve(obj, pointer, rule.path):
            errors.extend(CHECKS[rule.check](value, ptr, rule.arg))
    return errors


def _check_element(value: Any, ptr: str, allowed: frozenset[str]) -> list[str]:
    if not isinstance(value, dict):
        return [_err("must provide an object", ptr)]
    kind = value.get("type")
    if kind not in allowed or kind not in ELEMENT_RULES:
        return [_err("failed to match all allowed schemas", ptr)]
    rules = ELEMENT_RULES[kind]
    if kind in INTERACTIVE_ELEMENTS or kind in INPUT_ELEMENTS:
        rules = rules + COMMON_INTERACTIVE_RULES
    return _run_rules(value, ptr, rules)


def _check_unique(value: Any, ptr: str, key: str) -> list[str]:
    seen: set[str] = set()
    errors = []
    for i, item in enumerate(value if isinstance(value, list) else []):
        ident = item.get(key) if isinstance(item, dict) else None
        if ident is None:
            continue
        if ident in seen:
            errors.append(_err(f"{key} '{ident}' already exists", f"{ptr}/{i}/{key}"))
        seen.add(ident)
    return errors


CHECKS: dict[str, Callable[[Any, str, Any], list[str]]] = {
    "max_chars": lambda v, p, n: (
        [_err(f"must be less than {n + 1} characters", p)] if isinstance(v, str) and len(v) > n else []
    ),
    "max_items": lambda v, p, n: (
        [_err(f"no more than {n} items allowed", p)] if isinstance(v, list) and len(v) > n else []
    ),
    "max_number": lambda v, p, n: (
        [_err(f"must be less than or equal to {n}", p)] if isinstance(v, int) and v > n else []
    ),
    "enum": lambda v, p, allowed: [] if v in allowed else [_err("must be a valid enum value", p)],
    "text_object": lambda v, p, _: _check_text_object(v, p, TEXT_TYPES),
    "plain_text": lambda v, p, _: _check_text_object(v, p, ("plain_text",)),
    "element": _check_element,
    "object": lambda v, p, rules: (
        _run_rules(v, p, rules) if isinstance(v, dict) else [_err("must provide an object", p)]
    ),
    "unique": _check_unique,
}


def validate_blocks(blocks: Any, surface: Surface = MESSAGE, pointer: str = "/blocks") -> list[str]:
    """Every reason Slack would refuse `blocks` on `surface` (empty when they are fine)."""
    if not isinstance(blocks, list):
        return [_err("must provide an array", pointer)]
    errors: list[str] = []
    if len(blocks) > surface.max_blocks:
        errors.append(_err(f"no more than {surface.max_blocks} items allowed", pointer))
    block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        ptr = f"{pointer}/{i}"
        if not isinstance(block, dict):
            errors.append(_err("must provide an object", ptr))
            continue
        kind = block.get("type")
        if kind not in surface.block_types:
            errors.append(_err("failed to match all allowed schemas", ptr))
            continue
        errors.extend(_run_rules(block, ptr, BLOCK_RULES[kind] + COMMON_BLOCK_RULES))
        block_id = block.get("block_id")
        if block_id is not None:
            if block_id in block_ids:
                errors.append(_err(f"block_id '{block_id}' already exists", f"{ptr}/block_id"))
            block_ids.add(block_id)
    return errors


def validate_view(view: Any) -> list[str]:
    """Every reason Slack would refuse `view` in views.open/update/push."""
    if not isinstance(view, dict):
        return [_err("must provide an object", "/view")]
    errors = _run_rules(view, "/view", VIEW_RULES)
    if view.get("type") == "modal":
        errors += _run_rules(view, "/view", MODAL_RULES)
        blocks = view.get("blocks") or []
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and not view.get("submit"):
            errors.append(_err("must provide submit when the view contains input blocks", "/view"))
    if "blocks" in view:
        errors += validate_blocks(view["blocks"], MODAL, "/view/blocks")
    return errors


# --------------------------------------------------------------------------------------------
# What the world holds. Public snapshots are frozen; the sandbox replaces them on change.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One Web API request the bot made, as answered (for assertions)."""

    method: str
    params: dict[str, Any]
    response: dict[str, Any]
    status: int
    at: float
    injected: bool = False  # answered by a fault set up with fail()/rate_limit()/error()

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return self.response.get("error")


@dataclass(frozen=True)
class User:
    """A workspace member."""

    id: str
    name: str
    real_name: str
    email: str | None = None
    is_bot: bool = False
    bot_id: str | None = None

    def to_api(self) -> dict[str, Any]:
        profile: dict[str, Any] = {
            "real_name": self.real_name,
            "display_name": self.name,
            "real_name_normalized": self.real_name,
            "display_name_normalized": self.name,
            "team": TEAM_ID,
        }
        if self.email:
            profile["email"] = self.email
        if self.bot_id:
            profile["bot_id"] = self.bot_id
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": "Etc/UTC",
            "tz_label": "Coordinated Universal Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1764350000,
        }


@dataclass(frozen=True)
class Usergroup:
    """A user group (`S...`), mentioned as @handle; a disabled one keeps its members."""

    id: str
    handle: str
    name: str
    users: tuple[str, ...]
    description: str = ""
    created: int = 0
    disabled_at: int = 0

    def to_api(self, include_users: bool, include_count: bool) -> dict[str, Any]:
        # The shape of usergroups.list's entries: users only with include_users, the count
        # only with include_count.
        group: dict[str, Any] = {
            "id": self.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "is_subteam": True,
            "name": self.name,
            "description": self.description,
            "handle": self.handle,
            "is_external": False,
            "date_create": self.created,
            "date_update": self.created,
            "date_delete": self.disabled_at,
            "auto_type": None,
            "auto_provision": False,
            "enterprise_subteam_id": "",
            "created_by": "U0ALICE",
            "updated_by": "U0ALICE",
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
        }
        if include_users:
            group["users"] = list(self.users)
        if include_count:
            group["user_count"] = len(self.users)
        return group


@dataclass(frozen=True)
class Conversation:
    """A channel, private channel, IM (`D...`) or group DM (`G...`)."""

    id: str
    name: str
    members: tuple[str, ...]
    is_channel: bool = True
    is_private: bool = False
    is_im: bool = False
    is_mpim: bool = False
    is_general: bool = False
    is_archived: bool = False
    topic: str = ""
    purpose: str = ""
    created: int = 0
    creator: str = BOT_USER_ID
    user: str | None = None  # the other person, for an IM

    def to_api(self, viewer: str = BOT_USER_ID) -> dict[str, Any]:
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": self.is_channel,
            "is_group": self.is_private and not self.is_mpim,
            "is_im": False,
            "is_mpim": self.is_mpim,
            "is_private": self.is_private,
            "created": self.created,
            "creator": self.creator,
            "is_archived": self.is_archived,
            "is_general": self.is_general,
            "unlinked": 0,
            "name_normalized": self.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_member": viewer in self.members,
            "topic": {"value": self.topic, "creator": "", "last_set": 0},
            "purpose": {"value": self.purpose, "creator": "", "last_set": 0},
            "num_members": len(self.members),
        }


@dataclass(frozen=True)
class SandboxFile:
    """A file uploaded through files.getUploadURLExternal, the upload URL and files.completeUploadExternal."""

    id: str
    name: str
    length: int
    created: int
    title: str = ""
    content: bytes | None = None  # None until its bytes reach the upload URL
    completed: bool = False
    channels: tuple[str, ...] = ()

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": "text/plain",
            "filetype": "markdown" if self.name.endswith(".md") else "text",
            "pretty_type": "Markdown (raw)" if self.name.endswith(".md") else "Plain Text",
            "user": BOT_USER_ID,
            "user_team": TEAM_ID,
            "editable": True,
            "size": len(self.content or b""),
            "mode": "snippet",
            "is_external": False,
            "is_public": any(c.startswith("C") for c in self.channels),
            "url_private": f"https://files.slack.com/files-pri/{TEAM_ID}-{self.id}/{self.name}",
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{BOT_USER_ID}/{self.id}/{self.name}",
            "channels": [c for c in self.channels if c.startswith("C")],
            "groups": [c for c in self.channels if c.startswith("G")],
            "ims": [c for c in self.channels if c.startswith("D")],
        }


class _HasBlocks:
    """Shared by everything a person can see: its text, its blocks and their buttons."""

    text: str
    blocks: list[dict[str, Any]]

    def _button_context(self) -> dict[str, Any]:
        raise NotImplementedError

    def buttons(self) -> list[dict[str, Any]]:
        """Buttons in this message, ready for `SlackPlatform.click`."""
        found = []
        for block in self.blocks or []:
            elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
            if isinstance(block.get("accessory"), dict):
                elements.append(block["accessory"])
            for element in elements:
                if element.get("type") != "button":
                    continue
                found.append(
                    {
                        "action_id": element.get("action_id"),
                        "value": element.get("value"),
                        "text": (element.get("text") or {}).get("text", ""),
                        "block_id": block.get("block_id"),
                        "style": element.get("style"),
                        "url": element.get("url"),
                        **self._button_context(),
                    }
                )
        return found

    def button(self, action_id: str) -> dict[str, Any]:
        """The button with `action_id`; fails the test with what is there instead."""
        for candidate in self.buttons():
            if candidate["action_id"] == action_id:
                return candidate
        there = [b["action_id"] for b in self.buttons()]
        raise AssertionError(f"no button {action_id!r} in message {self.text!r}; buttons: {there}")

    def has_button(self, action_id: str) -> bool:
        return any(b["action_id"] == action_id for b in self.buttons())

    @property
    def all_text(self) -> str:
        """The message text and every text in its blocks, for `"INC-7" in msg.all_text`."""
        return "\n".join([self.text or "", *_texts_in(self.blocks or [])])


def _texts_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("text"), str) and node.get("type") in (*TEXT_TYPES, "text"):
            yield node["text"]
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _texts_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts_in(item)


@dataclass(frozen=True)
class MessageVersion:
    """A message as it was before an edit."""

    text: str
    blocks: list[dict[str, Any]]
    replaced_at: str


@dataclass(frozen=True)
class Message(_HasBlocks):
    """A message in a conversation, in its current form; `edits` keeps the earlier versions."""

    channel: str
    ts: str
    user: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    reply_broadcast: bool = False
    bot_id: str | None = None
    edits: tuple[MessageVersion, ...] = ()
    edited_ts: str | None = None
    via: str = "chat.postMessage"
    metadata: dict[str, Any] | None = None  # chat.postMessage's `metadata` (event_type, event_payload)
    files: list[dict[str, Any]] = field(default_factory=list)  # files shared with the message

    @property
    def edited(self) -> bool:
        return bool(self.edits)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def _button_context(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "message_ts": self.ts,
            "thread_ts": self.thread_ts,
            "is_ephemeral": False,
        }

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "message",
            "text": self.text,
            "user": self.user,
            "ts": self.ts,
            "team": TEAM_ID,
        }
        if self.bot_id:
            out.update(bot_id=self.bot_id, app_id=APP_ID)
            out["bot_profile"] = {"id": self.bot_id, "app_id": APP_ID, "name": BOT_NAME}
        if self.blocks:
            out["blocks"] = copy.deepcopy(self.blocks)
        if self.attachments:
            out["attachments"] = copy.deepcopy(self.attachments)
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.is_reply:
            out["parent_user_id"] = BOT_USER_ID
            if self.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        if self.edited_ts:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.files:
            out["files"] = copy.deepcopy(self.files)
            out["upload"] = True
        return out


@dataclass(frozen=True)
class Ephemeral(_HasBlocks):
    """A message only `user` sees: chat.postEphemeral, a slash command's ack or a response_url reply."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    thread_ts: str | None = None
    via: str = "chat.postEphemeral"  # or "ack", "response_url", "platform"
    key: str | None = None  # the response_url key it came through
    edits: tuple[MessageVersion, ...] = ()
    author: str = BOT_USER_ID

    @property
    def edited(self) -> bool:
        return bool(self.edits)

    def _button_context(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "message_ts": self.ts,
            "thread_ts": self.thread_ts,
            "is_ephemeral": True,
        }


@dataclass(frozen=True)
class ResponsePost(_HasBlocks):
    """One POST to a response_url (what Bolt's `respond()` sends), with where it landed."""

    key: str
    body: dict[str, Any]
    status: int
    at: float
    channel: str | None = None
    message_ts: str | None = None  # the message or ephemeral it created or changed
    is_ephemeral: bool = True

    @property
    def text(self) -> str:  # type: ignore[override]
        return str(self.body.get("text") or "")

    @property
    def blocks(self) -> list[dict[str, Any]]:  # type: ignore[override]
        blocks = self.body.get("blocks")
        return blocks if isinstance(blocks, list) else []

    @property
    def response_type(self) -> str:
        return str(self.body.get("response_type") or "ephemeral")

    def _button_context(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "message_ts": self.message_ts,
            "thread_ts": None,
            "is_ephemeral": self.is_ephemeral,
        }


@dataclass(frozen=True)
class Interaction:
    """Something a person did in Slack (ran a command, clicked, submitted), for the transcript."""

    ts: str
    user: str
    channel: str | None
    kind: str  # "command" | "click" | "submit"
    text: str


@dataclass(frozen=True)
class ResponseContext:
    """What a response_url is attached to."""

    key: str
    channel: str | None
    user: str | None
    message_ts: str | None = None
    is_ephemeral: bool = False
    thread_ts: str | None = None


@dataclass
class _Fault:
    kind: str  # "fail" | "rate_limit" | "error" | "delay"
    remaining: int | None  # None: until cleared
    status: int = 500
    error: str = "internal_error"
    retry_after: int = 1
    seconds: float = 0.0
    body: str | None = None


@dataclass
class _Chaos:
    rng: random.Random
    rate: float
    stall_s: float
    retry_after: int


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


_CHANNEL_NAME = re.compile(r"^[a-z0-9_\-]+$")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def _multipart_file(content_type: str, body: bytes) -> bytes | None:
    """The first file part of a multipart/form-data body (what `curl -F file=@x` sends)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets bursts of connections; Slack does not.
    request_queue_size = 256
    sandbox: SlackSandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client killed or timed out mid-answer (the crash and fault suites) is not a sandbox bug.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep test output clean; every call is recorded in sandbox.calls instead

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.sandbox.handle_http(
            self.command, self.path, dict(self.headers.items()), body
        )
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class SlackSandbox:
    """The Slack Web API and workspace, served on 127.0.0.1 for the bot's real `WebClient`."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = DEFAULT_TOKENS,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        seed: bool = True,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
    ) -> None:
        self.tokens = frozenset(tokens)
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
        self._view_meta: dict[str, dict[str, Any]] = {}
        self._triggers: dict[str, dict[str, Any]] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._holds: dict[str, float] = {}
        self._chaos: _Chaos | None = None
        self._last_ts = 0.0
        self._counter = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.create": self._conversations_create,
            "conversations.setTopic": self._conversations_set_topic,
            "conversations.setPurpose": self._conversations_set_purpose,
            "conversations.invite": self._conversations_invite,
            "conversations.join": self._conversations_join,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "conversations.archive": self._conversations_archive,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.members": self._conversations_members,
            "conversations.list": self._conversations_list,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
        }
        self._files: dict[str, SandboxFile] = {}
        self._upload_tokens: dict[str, str] = {}  # upload URL token -> file id
        if seed:
            self._seed()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SlackSandbox:
        """Listen on an ephemeral port of 127.0.0.1, serving from a daemon thread."""
        if self._server is None:
            self._server = _Server(("127.0.0.1", 0), _Handler)
            self._server.sandbox = self
            # A short poll interval makes stop() quick, which keeps the test suite fast.
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="slack-sandbox",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    def response_url(
        self,
        key: str,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
        thread_ts: str | None = None,
    ) -> str:
        """A response_url whose POSTs are recorded under `key` and shown where Slack would."""
        with self._lock:
            self._response_contexts[key] = ResponseContext(key, channel, user, message_ts, is_ephemeral, thread_ts)
        return f"{self.base_url}/response/{key}"

    def new_ts(self) -> str:
        """A fresh message ts, for things that happen outside the Web API (a forged click)."""
        with self._lock:
            return self._next_ts()

    def new_response_key(self) -> str:
        return f"r{next(self._counter)}"

    def issue_trigger_id(self, user: str = "U0PRIMARY") -> str:
        """A trigger_id as Slack puts in interactions; views.open accepts it once, for 3 s."""
        n = next(self._counter)
        trigger = f"{n}.{int(time.time())}.{_short_id(f'trigger{n}', 12).lower()}"
        with self._lock:
            self._triggers[trigger] = {"user": user, "at": time.monotonic(), "used": False}
        return trigger

    # ---- world set-up ------------------------------------------------------------------------

    def _seed(self) -> None:
        self.add_user(BOT_USER_ID, BOT_NAME, "Incident Bot", is_bot=True, bot_id=BOT_ID)
        self.add_user(SLACKBOT_ID, "slackbot", "Slackbot", is_bot=True)
        for uid, name, real_name, email in SEED_USERS:
            self.add_user(uid, name, real_name, email)
        humans = [uid for uid, *_ in SEED_USERS]
        self.add_channel("incident-response", id="C0INCIDENT", members=[BOT_USER_ID, *humans])
        self.add_channel("general", id="C0GENERAL", members=humans, is_general=True)

    def add_user(
        self,
        id: str,  # noqa: A002
        name: str,
        real_name: str | None = None,
        email: str | None = None,
        *,
        is_bot: bool = False,
        bot_id: str | None = None,
    ) -> User:
        user = User(id, name, real_name or name, email, is_bot, bot_id)
        with self._lock:
            self._users[id] = user
        return user

    def add_usergroup(self, handle: str, users: Iterable[str], *, id: str | None = None, name: str = "") -> Usergroup:  # noqa: A002
        """A user group, mentioned as @handle (without the @ here)."""
        with self._lock:
            group = Usergroup(
                id or self._new_id("S"),
                handle.lstrip("@"),
                name or handle.lstrip("@"),
                tuple(users),
                created=int(time.time()),
            )
            self._usergroups[group.id] = group
        return group

    def set_usergroup_users(self, group_id: str, users: Iterable[str]) -> None:
        with self._lock:
            self._usergroups[group_id] = replace(self._usergroups[group_id], users=tuple(users))

    def disable_usergroup(self, group_id: str) -> None:
        with self._lock:
            self._usergroups[group_id] = replace(self._usergroups[group_id], disabled_at=int(time.time()))

    def open_dm(self, user_id: str) -> Conversation:
        """The bot's DM with a user, opened if needed (as a user opening the app's Messages tab)."""
        with self._lock:
            try:
                return self._open_im(user_id)[0]
            except SlackError:
                raise ValueError(f"no user {user_id!r} in the sandbox") from None

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
    ) -> Conversation:
        with self._lock:
            conv = Conversation(
                id=id or self._new_id("G" if is_private else "C"),
                name=name,
                members=tuple(dict.fromkeys(members)),
                is_private=is_private,
                is_general=is_general,
                topic=topic,
                purpose=purpose,
                created=int(time.time()),
            )
            self._conversations[conv.id] = conv
            self._messages.setdefault(conv.id, [])
            return conv

    # ---- fault injection ---------------------------------------------------------------------

    def fail(self, method: str, status: int = 500, times: int = 1, body: str | None = None) -> None:
        """Answer the next `times` calls to `method` ("*" for any) with HTTP `status`."""
        self._add_fault(method, _Fault("fail", times, status=status, body=body))

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls with 429, `Retry-After` and `error: ratelimited`."""
        self._add_fault(method, _Fault("rate_limit", times, status=429, retry_after=retry_after))

    def error(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        """Answer the next `times` calls with HTTP 200 and `{"ok": false, "error": error}`."""
        self._add_fault(method, _Fault("error", times, status=200, error=error))

    def delay(self, method: str, seconds: float, times: int | None = None) -> None:
        """Answer calls to `method` `seconds` late (every call until `clear_faults`, or `times`)."""
        self._add_fault(method, _Fault("delay", times, seconds=seconds))

    def invite(self, channel: str, user: str) -> None:
        """Someone in the workspace invites `user` (the bot, say) to `channel`, as a person would."""
        with self._lock:
            conv = self._conversations[channel]
            if user not in conv.members:
                self._conversations[channel] = replace(conv, members=(*conv.members, user))

    def user_says(self, channel: str, user: str, text: str) -> Message:
        """A person posts `text` in `channel`, as they would from the Slack client."""
        with self._lock:
            conv = self._conversation(channel)
            return self._add_message(Message(channel=conv.id, ts=self._next_ts(), user=user, text=text))

    def hold_response(self, method: str, seconds: float) -> None:
        """Carry out calls to `method` at once but answer `seconds` late: the call took effect in
        Slack while the bot is still waiting, the window a crash can fall into."""
        with self._lock:
            self._holds[method] = seconds

    def chaos(self, rate: float, seed: int, *, stall_s: float, retry_after: int = 1) -> None:
        """Answer a seeded `rate` of all calls as Slack does on a bad day: 429 with `Retry-After`
        and `error: ratelimited`, or a 500, neither carried out; or a connection that stalls for
        `stall_s` (set it past the client's timeout) after the call was carried out, so its
        effect lands while the answer reaches nobody."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate, stall_s, retry_after)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._holds.clear()
            self._chaos = None

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    def _take_faults(self, method: str) -> tuple[float, _Fault | None]:
        """The delay to apply and the fault (if any) that answers this call, consumed."""
        delay, answer = 0.0, None
        with self._lock:
            for key in (method, "*"):
                for fault in self._faults.get(key, []):
                    if fault.remaining == 0:
                        continue
                    if fault.kind == "delay":
                        delay += fault.seconds
                    elif answer is None:
                        answer = fault
                    else:
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
        return delay, answer

    # ---- HTTP --------------------------------------------------------------------------------

    def handle_http(
        self, verb: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one HTTP request: (status, headers, body). Used by the server thread."""
        parts = urlsplit(path)
        lower = {k.lower(): v for k, v in headers.items()}
        if parts.path.startswith("/api/"):
            method = parts.path[len("/api/") :]
            return self._handle_api(method, parts.query, lower, body)
        if parts.path.startswith("/response/") and verb == "POST":
            return self._handle_response_url(parts.path[len("/response/") :], lower, body)
        if parts.path.startswith("/upload/v1/") and verb == "POST":
            return self._handle_upload(parts.path[len("/upload/v1/") :], lower, body)
        return 404, {"Content-Type": "text/plain"}, b"not found"

    def _handle_api(
        self, method: str, query: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        content_type = headers.get("content-type", "")
        json_body = False
        if body:
            if content_type.startswith("application/json"):
                json_body = True
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None
                if not isinstance(parsed, dict):
                    return self._answer(method, params, {"ok": False, "error": "invalid_json"}, 200)
                params.update(parsed)
            else:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        # Slack reads a token from the Authorization header or a form/query field, never from a
        # JSON body: a JSON request without the header is not authenticated.
        token = None
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        form_token = params.pop("token", None)
        if token is None and not json_body:
            token = form_token

        delay, fault = self._take_faults(method)
        stall = 0.0
        if fault is None:
            fault, stall = self._chaos_fault()
        if delay:
            time.sleep(delay)
        if fault is not None:
            return self._answer_fault(method, params, fault)

        try:
            if method not in self._methods:
                raise SlackError("unknown_method", req_method=method)
            self._authenticate(method, token)
            with self._lock:
                result = self._methods[method](params)
                hold = self._holds.get(method, 0.0) + stall
            response = {"ok": True, **result}
            if hold:
                time.sleep(hold)
        except SlackError as exc:
            response = {"ok": False, "error": exc.error, **exc.extra}
        except Exception:  # a sandbox bug must not look like a dropped connection
            self.errors.append(traceback.format_exc())
            return self._answer(method, params, {"ok": False, "error": "fatal_error"}, 500)
        return self._answer(method, params, response, 200)

    def _chaos_fault(self) -> tuple[_Fault | None, float]:
        """(a fault, or a stall in seconds) for this call under `chaos`; (None, 0) for most."""
        with self._lock:
            chaos = self._chaos
            if chaos is None or chaos.rng.random() >= chaos.rate:
                return None, 0.0
            kind = chaos.rng.choice(("rate_limit", "rate_limit", "fail", "fail", "stall"))
        if kind == "rate_limit":
            return _Fault("rate_limit", 1, status=429, retry_after=chaos.retry_after), 0.0
        if kind == "fail":
            return _Fault("fail", 1, status=500), 0.0
        return None, chaos.stall_s

    def _authenticate(self, method: str, token: str | None) -> None:
        if method == "api.test":
            return
        if not token:
            raise SlackError("not_authed")
        if token not in self.tokens:
            raise SlackError("invalid_auth")
        needed = METHOD_SCOPES.get(method)
        if needed and needed not in self.scopes:
            raise SlackError("missing_scope", needed=needed, provided=",".join(sorted(self.scopes)))

    def _answer_fault(self, method: str, params: dict[str, Any], fault: _Fault) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if fault.kind == "rate_limit":
            response: dict[str, Any] = {"ok": False, "error": "ratelimited"}
            headers["Retry-After"] = str(fault.retry_after)
        elif fault.kind == "error":
            response = {"ok": False, "error": fault.error}
        else:
            if fault.body is not None:
                self._record(Call(method, params, {"raw": fault.body}, fault.status, time.time(), True))
                return fault.status, {"Content-Type": "text/plain"}, fault.body.encode()
            response = {"ok": False, "error": "internal_error"}
        self._record(Call(method, params, response, fault.status, time.time(), True))
        return fault.status, headers, json.dumps(response).encode()

    def _answer(
        self, method: str, params: dict[str, Any], response: dict[str, Any], status: int
    ) -> tuple[int, dict[str, str], bytes]:
        self._record(Call(method, params, response, status, time.time()))
        return (
            status,
            {"Content-Type": "application/json; charset=utf-8"},
            json.dumps(response).encode(),
        )

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    # ---- helpers used by the methods (called with the lock held) -----------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):09d}"

    def _next_ts(self) -> str:
        """A message ts: wall-clock seconds, strictly increasing, unique in the workspace."""
        now = max(time.time(), self._last_ts + 0.000001)
        self._last_ts = now
        return f"{now:.6f}"

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

    def _require_member(self, conv: Conversation) -> None:
        if BOT_USER_ID not in conv.members:
            raise SlackError("not_in_channel")

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

    def _message_api(self, msg: Message, include_metadata: bool = False) -> dict[str, Any]:
        """A message as conversations.history/replies return it (parents carry thread stats)."""
        out = msg.to_api()
        if include_metadata and msg.metadata:
            out["metadata"] = copy.deepcopy(msg.metadata)
        if not msg.is_reply:
            replies = [m for m in self._messages[msg.channel] if m.thread_ts == msg.ts and m.is_reply]
            if replies:
                out.update(
                    thread_ts=msg.ts,
                    reply_count=len(replies),
                    reply_users=sorted({m.user for m in replies}),
                    reply_users_count=len({m.user for m in replies}),
                    latest_reply=replies[-1].ts,
                )
        return out

    def _add_message(self, msg: Message) -> Message:
        self._messages.setdefault(msg.channel, []).append(msg)
        return msg

    # ---- API methods (lock held) -------------------------------------------------------------

    def _api_test(self, params: dict[str, Any]) -> dict[str, Any]:
        if "error" in params:
            raise SlackError(str(params["error"]), args=params)
        return {"args": params}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._post_target(params.get("channel"))
        self._require_postable(conv)
        text, blocks, attachments = self._message_content(params)
        thread_ts = params.get("thread_ts") or None
        if thread_ts is not None:
            thread_ts = str(thread_ts)
            # Replying to a reply threads under the same parent, as in Slack.
            for existing in self._messages[conv.id]:
                if existing.ts == thread_ts and existing.thread_ts:
                    thread_ts = existing.thread_ts
        ts = self._next_ts()
        msg = self._add_message(
            Message(
                channel=conv.id,
                ts=ts,
                user=BOT_USER_ID,
                text=text or "",
                blocks=self._fill_ids(blocks, ts),
                attachments=copy.deepcopy(attachments or []),
                thread_ts=thread_ts,
                reply_broadcast=bool(thread_ts) and _truthy(params.get("reply_broadcast")),
                bot_id=BOT_ID,
                metadata=self._metadata(params.get("metadata")),
            )
        )
        return {"channel": conv.id, "ts": ts, "message": msg.to_api()}

    @staticmethod
    def _metadata(value: Any) -> dict[str, Any] | None:
        """Message metadata arrives as an object (JSON bodies) or a JSON string (form bodies)."""
        if value in (None, ""):
            return None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise SlackError("invalid_metadata_format") from None
        if (
            not isinstance(value, dict)
            or not value.get("event_type")
            or not isinstance(value.get("event_payload"), dict)
        ):
            raise SlackError("invalid_metadata_schema")
        return copy.deepcopy(value)

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        if conv.is_archived:
            raise SlackError("is_archived")
        index, msg = self._find_message(conv.id, params.get("ts"))
        if msg.user != BOT_USER_ID:
            raise SlackError("cant_update_message")
        has_text, has_blocks = "text" in params, "blocks" in params
        text, blocks, attachments = self._message_content(params, required=False)
        if not text and not blocks and not attachments:
            raise SlackError("no_text")
        edit_ts = self._next_ts()
        # Slack keeps whatever the update leaves out (blocks: [] removes them).
        updated = replace(
            msg,
            text=text if has_text and text is not None else msg.text,
            blocks=self._fill_ids(blocks, f"{msg.ts}/{edit_ts}") if has_blocks else msg.blocks,
            attachments=copy.deepcopy(attachments) if attachments is not None else msg.attachments,
            edits=(*msg.edits, MessageVersion(msg.text, msg.blocks, edit_ts)),
            edited_ts=edit_ts,
        )
        self._messages[conv.id][index] = updated
        return {
            "channel": conv.id,
            "ts": msg.ts,
            "text": updated.text,
            "message": {k: v for k, v in updated.to_api().items() if k != "ts"},
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        """A bot token deletes only the bot's own messages. A parent with replies leaves a
        tombstone ("This message was deleted.") so its thread stays, as in Slack."""
        conv = self._conversation(params.get("channel"))
        index, msg = self._find_message(conv.id, params.get("ts"))
        if msg.user != BOT_USER_ID:
            raise SlackError("cant_delete_message")
        self.deleted.append(msg)
        replies = [m for m in self._messages[conv.id] if m.is_reply and m.thread_ts == msg.ts]
        if replies:
            self._messages[conv.id][index] = replace(
                msg, user=SLACKBOT_ID, text="This message was deleted.", blocks=[], attachments=[], bot_id=None
            )
        else:
            del self._messages[conv.id][index]
        return {"channel": conv.id, "ts": msg.ts}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._post_target(params.get("channel"))
        self._require_postable(conv)
        user = str(params.get("user") or "")
        if user not in self._users:
            raise SlackError("user_not_found")
        if user not in conv.members:
            raise SlackError("user_not_in_channel")
        text, blocks, _ = self._message_content(params)
        ts = self._next_ts()
        self._ephemerals.append(
            Ephemeral(
                channel=conv.id,
                user=user,
                ts=ts,
                text=text or "",
                blocks=self._fill_ids(blocks, ts),
                thread_ts=str(params["thread_ts"]) if params.get("thread_ts") else None,
            )
        )
        return {"message_ts": ts}

    def _chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        _, msg = self._find_message(conv.id, params.get("message_ts"))
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{conv.id}/p{msg.ts.replace('.', '')}"
        if msg.is_reply:
            link += f"?thread_ts={msg.thread_ts}&cid={conv.id}"
        return {"channel": conv.id, "permalink": link}

    def _conversations_create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("name") or "")
        if not name:
            raise SlackError("invalid_name_required")
        if len(name) > MAX_CHANNEL_NAME:
            raise SlackError("invalid_name_maxlength")
        if not _CHANNEL_NAME.match(name):
            raise SlackError("invalid_name_specials")
        if not re.search(r"[a-z0-9]", name):
            raise SlackError("invalid_name_punctuation")
        if self._by_name(name) is not None:
            raise SlackError("name_taken")
        is_private = _truthy(params.get("is_private"))
        conv = self.add_channel(name, members=(BOT_USER_ID,), is_private=is_private)
        return {"channel": conv.to_api()}

    def _set_text_field(self, params: dict[str, Any], field_name: str) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        if conv.is_archived:
            raise SlackError("is_archived")
        self._require_member(conv)
        value = str(params.get(field_name) or "")
        if len(value) > MAX_TOPIC:
            raise SlackError("too_long")
        conv = replace(conv, topic=value) if field_name == "topic" else replace(conv, purpose=value)
        self._conversations[conv.id] = conv
        return {"channel": conv.to_api()}

    def _conversations_set_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._set_text_field(params, "topic")

    def _conversations_set_purpose(self, params: dict[str, Any]) -> dict[str, Any]:
        result = self._set_text_field(params, "purpose")
        return {**result, "purpose": result["channel"]["purpose"]["value"]}

    def _conversations_invite(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        if conv.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        if conv.is_archived:
            raise SlackError("is_archived")
        self._require_member(conv)
        users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
        if not users:
            raise SlackError("no_user")
        # Without `force`, one bad user fails the whole call and nobody is added, as in Slack.
        problems: list[dict[str, Any]] = []
        for uid in users:
            if uid == BOT_USER_ID:
                problems.append({"user": uid, "ok": False, "error": "cant_invite_self"})
            elif uid not in self._users:
                problems.append({"user": uid, "ok": False, "error": "user_not_found"})
            elif uid in conv.members:
                problems.append({"user": uid, "ok": False, "error": "already_in_channel"})
        if problems and not (_truthy(params.get("force")) and len(problems) < len(users)):
            raise SlackError(str(problems[0]["error"]), errors=problems)
        bad = {p["user"] for p in problems}
        conv = replace(conv, members=(*conv.members, *(u for u in users if u not in bad)))
        self._conversations[conv.id] = conv
        return {"channel": conv.to_api()}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversations.get(str(params.get("channel") or ""))
        if conv is None or (conv.is_private and BOT_USER_ID not in conv.members):
            raise SlackError("channel_not_found")
        if conv.is_im or conv.is_private:
            raise SlackError("method_not_supported_for_channel_type")
        if conv.is_archived:
            raise SlackError("is_archived")
        if BOT_USER_ID in conv.members:
            return {
                "channel": conv.to_api(),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        conv = replace(conv, members=(*conv.members, BOT_USER_ID))
        self._conversations[conv.id] = conv
        return {"channel": conv.to_api()}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self._conversation(params.get("channel")).to_api()}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("channel"):
            conv = self._conversation(params["channel"])
            already = True
        else:
            users = [u.strip() for u in str(params.get("users") or "").split(",") if u.strip()]
            if not users:
                raise SlackError("users_list_not_supplied")
            if len(users) == 1:
                conv, already = self._open_im(users[0])
            else:
                conv, already = self._open_mpim(users)
        out: dict[str, Any] = {"channel": conv.to_api() if _truthy(params.get("return_im")) else {"id": conv.id}}
        if already:
            out.update(no_op=True, already_open=True)
        return out

    def _open_mpim(self, users: list[str]) -> tuple[Conversation, bool]:
        for uid in users:
            if uid not in self._users:
                raise SlackError("user_not_found")
        members = tuple(sorted({BOT_USER_ID, *users}))
        for conv in self._conversations.values():
            if conv.is_mpim and tuple(sorted(conv.members)) == members:
                return conv, True
        names = "--".join(self._users[u].name for u in members)
        conv = Conversation(
            id=self._new_id("G"),
            name=f"mpdm-{names}-1",
            members=members,
            is_channel=False,
            is_private=True,
            is_mpim=True,
            created=int(time.time()),
        )
        self._conversations[conv.id] = conv
        self._messages[conv.id] = []
        return conv, False

    def _conversations_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        if conv.is_im or conv.is_mpim:
            raise SlackError("method_not_supported_for_channel_type")
        if conv.is_archived:
            raise SlackError("already_archived")
        if conv.is_general:
            raise SlackError("cant_archive_general")
        self._require_member(conv)
        self._conversations[conv.id] = replace(conv, is_archived=True)
        return {}

    def _readable(self, params: dict[str, Any]) -> Conversation:
        conv = self._conversation(params.get("channel"))
        self._require_member(conv)
        return conv

    def _page(self, items: list[T], params: dict[str, Any]) -> tuple[list[T], dict[str, Any]]:
        """Cursor pagination as Slack does it: `limit`, `cursor` in, `next_cursor` out."""
        limit = max(1, min(int(params.get("limit") or 100), 999))
        cursor = str(params.get("cursor") or "")
        start = int(base64.b64decode(cursor).decode().split(":")[1]) if cursor else 0
        page = items[start : start + limit]
        more = start + limit < len(items)
        next_cursor = base64.b64encode(f"offset:{start + limit}".encode()).decode() if more else ""
        return page, {"has_more": more, "response_metadata": {"next_cursor": next_cursor}}

    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """Channels the bot can see: public ones, and private ones it is a member of."""
        types = set(str(params.get("types") or "public_channel").split(","))
        exclude_archived = _truthy(params.get("exclude_archived"))
        visible = [
            c
            for c in self._conversations.values()
            if not c.is_im
            and ("private_channel" if c.is_private else "public_channel") in types
            and (not c.is_private or BOT_USER_ID in c.members)
            and not (exclude_archived and c.is_archived)
        ]
        page, meta = self._page(visible, params)
        return {
            "channels": [c.to_api() for c in page],
            "response_metadata": meta["response_metadata"],
        }

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._readable(params)
        oldest = float(params.get("oldest") or 0)
        latest = float(params.get("latest") or "inf")
        inclusive = _truthy(params.get("inclusive"))
        visible = [
            m
            for m in reversed(self._messages[conv.id])
            if (not m.is_reply or m.reply_broadcast)
            and (oldest <= float(m.ts) <= latest if inclusive else oldest < float(m.ts) < latest)
        ]
        page, meta = self._page(visible, params)
        with_metadata = _truthy(params.get("include_all_metadata"))
        return {
            "messages": [self._message_api(m, with_metadata) for m in page],
            "pin_count": 0,
            **meta,
        }

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._readable(params)
        ts = str(params.get("ts") or "")
        try:
            _, parent = self._find_message(conv.id, ts)
        except SlackError:
            raise SlackError("thread_not_found") from None
        if parent.is_reply:
            thread = [parent]
        else:
            thread = [parent] + [m for m in self._messages[conv.id] if m.thread_ts == ts and m.is_reply]
        oldest = float(params.get("oldest") or 0)
        thread = [m for m in thread if float(m.ts) >= oldest]
        page, meta = self._page(thread, params)
        with_metadata = _truthy(params.get("include_all_metadata"))
        return {"messages": [self._message_api(m, with_metadata) for m in page], **meta}

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        conv = self._conversation(params.get("channel"))
        page, meta = self._page(list(conv.members), params)
        return {"members": page, "response_metadata": meta["response_metadata"]}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(str(params.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user.to_api()}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = str(params.get("email") or "").strip().lower()
        for user in self._users.values():
            if user.email and user.email.lower() == email:
                return {"user": user.to_api()}
        raise SlackError("users_not_found")

    def _usergroups_list(self, params: dict[str, Any]) -> dict[str, Any]:
        """Every user group in one answer (the method does not page); disabled ones on request."""
        include_disabled = _truthy(params.get("include_disabled"))
        groups = [g for g in self._usergroups.values() if include_disabled or not g.disabled_at]
        return {
            "usergroups": [
                g.to_api(_truthy(params.get("include_users")), _truthy(params.get("include_count"))) for g in groups
            ]
        }

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group_id = str(params.get("usergroup") or "")
        if not group_id:
            raise SlackError("invalid_arguments")
        group = self._usergroups.get(group_id)
        # A disabled group is answered as missing unless asked for (Slack does the same).
        if group is None or (group.disabled_at and not _truthy(params.get("include_disabled"))):
            raise SlackError("no_such_subteam")
        return {"users": list(group.users)}

    def _view_param(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._json_param(params, "view", "invalid_arguments")
        errors = validate_view(view)
        if errors:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] {e}" for e in errors]},
            )
        assert isinstance(view, dict)
        return view

    def _use_trigger(self, params: dict[str, Any]) -> str:
        trigger = str(params.get("trigger_id") or params.get("interactivity_pointer") or "")
        info = self._triggers.get(trigger)
        if info is None:
            raise SlackError("invalid_trigger_id")
        if info["used"]:
            raise SlackError("exchanged_trigger_id")
        if time.monotonic() - info["at"] > self.trigger_ttl:
            raise SlackError("expired_trigger_id")
        info["used"] = True
        return str(info["user"])

    def _store_view(
        self,
        view: dict[str, Any],
        *,
        user: str,
        view_id: str | None = None,
        previous: str | None = None,
        root: str | None = None,
    ) -> dict[str, Any]:
        view_id = view_id or self._new_id("V")
        stored = {
            "type": "modal",
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            **copy.deepcopy(view),
        }
        stored.update(
            id=view_id,
            team_id=TEAM_ID,
            blocks=self._fill_ids(view.get("blocks"), f"{view_id}/{time.time()}"),
            state={"values": {}},
            hash=f"{int(time.time())}.{_short_id(f'{view_id}{time.time()}', 8)}",
            previous_view_id=previous,
            root_view_id=root or view_id,
            app_id=APP_ID,
            app_installed_team_id=TEAM_ID,
            bot_id=BOT_ID,
        )
        self._views[view_id] = stored
        self._view_meta[view_id] = {"user": user, "open": True}
        return {"view": copy.deepcopy(stored)}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._use_trigger(params)
        return self._store_view(self._view_param(params), user=user)

    def _views_push(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._use_trigger(params)
        view = self._view_param(params)
        stack = [v for v in self._views.values() if self._view_meta[v["id"]]["open"]]
        stack = [v for v in stack if self._view_meta[v["id"]]["user"] == user]
        if len(stack) >= MAX_VIEW_STACK:
            raise SlackError("push_limit_reached")
        top = stack[-1] if stack else None
        return self._store_view(
            view,
            user=user,
            previous=top["id"] if top else None,
            root=top["root_view_id"] if top else None,
        )

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id = str(params.get("view_id") or "")
        external_id = str(params.get("external_id") or "")
        if not view_id and external_id:
            view_id = next((v["id"] for v in self._views.values() if v.get("external_id") == external_id), "")
        current = self._views.get(view_id)
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = self._view_param(params)
        return self._store_view(
            view,
            user=self._view_meta[view_id]["user"],
            view_id=view_id,
            previous=current["previous_view_id"],
            root=current["root_view_id"],
        )

    # ---- files: the three-step external upload ----------------------------------------------

    def _files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = str(params.get("filename") or "")
        if not filename:
            raise SlackError("invalid_arguments")
        try:
            length = int(params.get("length") or 0)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None
        if length <= 0:
            raise SlackError("missing_argument")  # Slack: "typically only when length is 0"
        file_id = self._new_id("F")
        token = _short_id(f"upload{file_id}", 16)
        self._files[file_id] = SandboxFile(file_id, filename, length, int(time.time()))
        self._upload_tokens[token] = file_id
        return {"upload_url": f"{self.base_url}/upload/v1/{token}", "file_id": file_id}

    def _handle_upload(self, token: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """The upload URL: raw bytes or a multipart form; 200 "OK - <size>" as files.slack.com answers."""
        with self._lock:
            file_id = self._upload_tokens.get(token)
            content: bytes | None = body
            content_type = headers.get("content-type", "")
            if content_type.startswith("multipart/form-data"):
                content = _multipart_file(content_type, body)
            if file_id is None or content is None:
                self._record(Call("upload", {"token": token}, {"ok": False, "error": "not_found"}, 404, time.time()))
                return 404, {"Content-Type": "text/plain"}, b"Not Found"
            self._files[file_id] = replace(self._files[file_id], content=content)
            self._record(Call("upload", {"file_id": file_id, "size": len(content)}, {"ok": True}, 200, time.time()))
        return 200, {"Content-Type": "text/plain; charset=utf-8"}, f"OK - {len(content)}".encode()

    def _files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        files = self._json_param(params, "files", "invalid_arguments")
        if not isinstance(files, list) or not files or not all(isinstance(f, dict) and f.get("id") for f in files):
            raise SlackError("invalid_arguments")
        uploads = []
        for entry in files:
            upload = self._files.get(str(entry["id"]))
            if upload is None or upload.content is None or upload.completed:
                raise SlackError("file_not_found")
            uploads.append(replace(upload, title=str(entry.get("title") or upload.name), completed=True))
        channel_ids = [str(params["channel_id"])] if params.get("channel_id") else []
        channel_ids += [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("thread_ts") and len(channel_ids) != 1:
            raise SlackError("invalid_arguments")  # a thread reply goes to exactly one channel
        targets = [self._post_target(c) for c in channel_ids]
        for conv in targets:
            self._require_postable(conv)
        comment = str(params.get("initial_comment") or "")
        if len(comment) > MAX_TEXT:
            raise SlackError("msg_too_long")
        for upload in uploads:
            self._files[upload.id] = replace(upload, channels=tuple(c.id for c in targets))
        for conv in targets:
            thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
            ts = self._next_ts()
            self._add_message(
                Message(
                    channel=conv.id,
                    ts=ts,
                    user=BOT_USER_ID,
                    text=comment,
                    thread_ts=thread_ts,
                    bot_id=BOT_ID,
                    via="files.completeUploadExternal",
                    files=[self._files[u.id].to_api() for u in uploads],
                )
            )
        return {"files": [{"id": u.id, "title": u.title} for u in uploads]}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        upload = self._files.get(str(params.get("file") or ""))
        if upload is None or not upload.completed:
            raise SlackError("file_not_found")
        return {"file": upload.to_api(), "comments": [], "response_metadata": {"next_cursor": ""}}

    # ---- people in the workspace -------------------------------------------------------------

    def post_as(self, user: str, channel: str, text: str, thread_ts: str | None = None) -> Message:
        """A person says something in a channel (as typed in Slack's client, not through the API)."""
        with self._lock:
            conv = self.conversation(channel)
            if conv is None:
                raise ValueError(f"no conversation {channel!r} in the sandbox")
            return self._add_message(Message(conv.id, self._next_ts(), user, text, thread_ts=thread_ts, via="client"))

    def delete_message(self, channel: str, ts: str) -> None:
        """Someone deletes a message: it is gone from history and threads."""
        with self._lock:
            conv = self.conversation(channel)
            assert conv is not None
            self._messages[conv.id] = [m for m in self._messages[conv.id] if m.ts != ts]

    def uploaded_files(self) -> list[SandboxFile]:
        """Files whose upload was completed, oldest first."""
        with self._lock:
            return [f for f in self._files.values() if f.completed]

    # ---- the other half of the wire: response_url, acks, interactions ------------------------

    def _handle_response_url(self, key: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            ctx = self._response_contexts.get(key)
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            payload = None
        problem = None
        if ctx is None:
            problem = (404, "no_service")
        elif not isinstance(payload, dict):
            problem = (400, "invalid_payload")
        else:
            try:
                self._message_content(dict(payload), required=not _truthy(payload.get("delete_original")))
            except SlackError as exc:
                problem = (400, exc.error)
        if problem is not None:
            status, error = problem
            params = payload if isinstance(payload, dict) else {"raw": body.decode(errors="replace")}
            self._record(
                Call(
                    "response_url",
                    {"key": key, **params},
                    {"ok": False, "error": error},
                    status,
                    time.time(),
                )
            )
            return status, {"Content-Type": "text/plain"}, error.encode()
        assert ctx is not None and isinstance(payload, dict)
        try:
            with self._lock:
                self._deliver(ctx, payload, via="response_url")
        except SlackError as exc:  # the original message is gone
            self._record(
                Call(
                    "response_url",
                    {"key": key, **payload},
                    {"ok": False, "error": exc.error},
                    404,
                    time.time(),
                )
            )
            return 404, {"Content-Type": "text/plain"}, exc.error.encode()
        self._record(Call("response_url", {"key": key, **payload}, {"ok": True}, 200, time.time()))
        return 200, {"Content-Type": "text/plain"}, b"ok"

    def _deliver(self, ctx: ResponseContext, payload: dict[str, Any], via: str) -> ResponsePost:
        """Show a response_url post (or an ack body) where Slack would (lock held)."""
        text = str(payload.get("text") or "")
        blocks = payload.get("blocks") if isinstance(payload.get("blocks"), list) else None
        channel, target_ts, ephemeral = ctx.channel, None, True
        if _truthy(payload.get("delete_original")) and ctx.message_ts:
            self._remove(ctx, ctx.message_ts)
            target_ts, ephemeral = ctx.message_ts, ctx.is_ephemeral
        elif _truthy(payload.get("replace_original")) and ctx.message_ts:
            self._replace(ctx, text, blocks)
            target_ts, ephemeral = ctx.message_ts, ctx.is_ephemeral
        elif payload.get("response_type") == "in_channel" and channel in self._conversations:
            ts = self._next_ts()
            thread_ts = payload.get("thread_ts") or None
            self._add_message(
                Message(
                    channel,
                    ts,
                    BOT_USER_ID,
                    text,
                    self._fill_ids(blocks, ts),
                    thread_ts=thread_ts,
                    bot_id=BOT_ID,
                    via=via,
                )
            )
            target_ts, ephemeral = ts, False
        elif channel is not None and ctx.user is not None:
            ts = self._next_ts()
            self._ephemerals.append(
                Ephemeral(
                    channel,
                    ctx.user,
                    ts,
                    text,
                    self._fill_ids(blocks, ts),
                    ctx.thread_ts,
                    via=via,
                    key=ctx.key,
                )
            )
            target_ts = ts
        post = ResponsePost(ctx.key, copy.deepcopy(payload), 200, time.time(), channel, target_ts, ephemeral)
        if via == "response_url":
            self._responses.append(post)
        return post

    def _remove(self, ctx: ResponseContext, ts: str) -> None:
        if ctx.is_ephemeral:
            self._ephemerals = [e for e in self._ephemerals if e.ts != ts]
        elif ctx.channel:
            self._messages[ctx.channel] = [m for m in self._messages.get(ctx.channel, []) if m.ts != ts]

    def _replace(self, ctx: ResponseContext, text: str, blocks: list[dict[str, Any]] | None) -> None:
        edit_ts = self._next_ts()
        new_blocks = self._fill_ids(blocks, f"{ctx.message_ts}/{edit_ts}")
        if ctx.is_ephemeral:
            self._ephemerals = [
                replace(
                    e,
                    text=text,
                    blocks=new_blocks,
                    edits=(*e.edits, MessageVersion(e.text, e.blocks, edit_ts)),
                )
                if e.ts == ctx.message_ts
                else e
                for e in self._ephemerals
            ]
        elif ctx.channel and ctx.message_ts:
            index, msg = self._find_message(ctx.channel, ctx.message_ts)
            self._messages[ctx.channel][index] = replace(
                msg,
                text=text,
                blocks=new_blocks,
                edits=(*msg.edits, MessageVersion(msg.text, msg.blocks, edit_ts)),
                edited_ts=edit_ts,
            )

    def record_ack(self, key: str, body: dict[str, Any]) -> None:
        """Show a slash command's ack body the way Slack does: to the user, or in channel."""
        with self._lock:
            ctx = self._response_contexts.get(key)
            if ctx is not None and (body.get("text") or body.get("blocks")):
                self._deliver(ctx, body, via="ack")

    def record_platform_notice(self, channel: str, user: str, text: str) -> None:
        """What Slack itself tells a user when the app fails (e.g. "failed with the error ...")."""
        with self._lock:
            self._ephemerals.append(Ephemeral(channel, user, self._next_ts(), text, via="platform", author=SLACKBOT_ID))

    def record_interaction(self, kind: str, user: str, channel: str | None, text: str) -> None:
        with self._lock:
            self._interactions.append(Interaction(self._next_ts(), user, channel, kind, text))

    def apply_view_response(self, view_id: str, status: int, body: Any) -> None:
        """What Slack does with a view_submission's answer: close, update, push or show errors."""
        with self._lock:
            meta = self._view_meta.get(view_id)
            if meta is None or status != 200:
                return  # Slack keeps the modal open and shows a connection error
            action = body.get("response_action") if isinstance(body, dict) else None
            if action in (None, ""):
                meta["open"] = False
            elif action == "clear":
                root = self._views[view_id]["root_view_id"]
                for vid, view in self._views.items():
                    if view["root_view_id"] == root:
                        self._view_meta[vid]["open"] = False
            elif action == "update" and not validate_view(body.get("view")):
                current = self._views[view_id]
                self._store_view(
                    body["view"],
                    user=meta["user"],
                    view_id=view_id,
                    previous=current["previous_view_id"],
                    root=current["root_view_id"],
                )
            elif action == "push" and not validate_view(body.get("view")):
                current = self._views[view_id]
                self._store_view(body["view"], user=meta["user"], previous=view_id, root=current["root_view_id"])
            # "errors": the modal stays open with the messages under the inputs

    # ---- what tests look at ------------------------------------------------------------------

    def user(self, user_id: str) -> User | None:
        with self._lock:
            return self._users.get(user_id)

    def users(self) -> list[User]:
        with self._lock:
            return list(self._users.values())

    def usergroups(self) -> list[Usergroup]:
        with self._lock:
            return list(self._usergroups.values())

    def conversation(self, ref: str) -> Conversation | None:
        """A conversation by ID, name ("#name" or "name") or user ID (their DM with the bot)."""
        with self._lock:
            ref = ref.strip()
            if ref in self._conversations:
                return self._conversations[ref]
            if ref in self._users:
                return self._conversations.get("D" + ref[1:])
            return self._by_name(ref.lstrip("#"))

    def conversations(self) -> list[Conversation]:
        """Every conversation, in creation order."""
        with self._lock:
            return list(self._conversations.values())

    def channel_by_name(self, name: str) -> Conversation | None:
        with self._lock:
            return self._by_name(name.lstrip("#"))

    def messages_in(self, channel: str) -> list[Message]:
        """Messages in a conversation (top level and thread replies), oldest first."""
        conv = self.conversation(channel)
        if conv is None:
            return []
        with self._lock:
            return list(self._messages.get(conv.id, []))

    def top_level(self, channel: str) -> list[Message]:
        return [m for m in self.messages_in(channel) if not m.is_reply]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies under the message `ts`, oldest first."""
        return [m for m in self.messages_in(channel) if m.is_reply and m.thread_ts == ts]

    def dms_to(self, user_id: str) -> list[Message]:
        """What the bot sent the user in their DM."""
        return self.messages_in(user_id) if self.conversation(user_id) else []

    def ephemerals_to(self, user: str) -> list[Ephemeral]:
        with self._lock:
            return [e for e in self._ephemerals if e.user == user]

    def ephemerals(self) -> list[Ephemeral]:
        with self._lock:
            return list(self._ephemerals)

    def responses(self, key: str | None = None) -> list[ResponsePost]:
        """POSTs made to response_urls (all, or for one key), oldest first."""
        with self._lock:
            return [r for r in self._responses if key is None or r.key == key]

    def interactions(self) -> list[Interaction]:
        with self._lock:
            return list(self._interactions)

    def views(self, callback_id: str | None = None, *, open_only: bool = False) -> list[dict[str, Any]]:
        """Views opened through views.open/push/update, as Slack returned them."""
        with self._lock:
            return [
                copy.deepcopy(v)
                for v in self._views.values()
                if (callback_id is None or v.get("callback_id") == callback_id)
                and (not open_only or self._view_meta[v["id"]]["open"])
            ]

    def view_user(self, view_id: str) -> str | None:
        with self._lock:
            meta = self._view_meta.get(view_id)
            return meta["user"] if meta else None

    def is_view_open(self, view_id: str) -> bool:
        with self._lock:
            return bool(self._view_meta.get(view_id, {}).get("open"))

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def refusals(self) -> list[Call]:
        """Calls Slack refused because of how they were made (see REFUSAL_ERRORS)."""
        with self._lock:
            return [c for c in self.calls if not c.injected and not c.ok and c.error in REFUSAL_ERRORS]

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def find_button(self, action_id: str, *, channel: str | None = None, user: str | None = None) -> dict[str, Any]:
        """The newest button with `action_id` that `user` can see (in `channel`, if given)."""
        conv = self.conversation(channel) if channel else None
        with self._lock:
            candidates: list[Message | Ephemeral] = []
            for cid, messages in self._messages.items():
                if conv is None or cid == conv.id:
                    candidates.extend(messages)
            candidates.extend(
                e
                for e in self._ephemerals
                if (user is None or e.user == user) and (conv is None or e.channel == conv.id)
            )
        for item in sorted(candidates, key=lambda m: float(m.ts), reverse=True):
            if item.has_button(action_id):
                return item.button(action_id)
        raise AssertionError(f"no visible button {action_id!r}\n{self.dump()}")

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, what: str = "") -> T:
        """Poll `predicate` until it returns something truthy; return that, or fail with a dump."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                label = what or getattr(predicate, "__name__", "condition")
                raise AssertionError(f"timed out after {timeout}s waiting for {label}\n{self.dump()}")
            time.sleep(0.02)

    def wait_for_message(
        self,
        channel: str,
        contains: str | None = None,
        *,
        with_button: str | None = None,
        timeout: float = 5.0,
    ) -> Message:
        """The newest message in `channel` matching; waits for it to arrive."""

        def found() -> Message | None:
            for msg in reversed(self.messages_in(channel)):
                if contains is not None and contains not in msg.all_text:
                    continue
                if with_button is not None and not msg.has_button(with_button):
                    continue
                return msg
            return None

        what = f"a message in {channel} containing {contains!r} with button {with_button!r}"
        return self.wait_for(found, timeout, what)

    def wait_for_dm(
        self,
        user: str,
        contains: str | None = None,
        *,
        with_button: str | None = None,
        timeout: float = 5.0,
    ) -> Message:
        return self.wait_for_message(user, contains, with_button=with_button, timeout=timeout)

    def wait_for_ephemeral(self, user: str, contains: str | None = None, *, timeout: float = 5.0) -> Ephemeral:
        def found() -> Ephemeral | None:
            for eph in reversed(self.ephemerals_to(user)):
                if contains is None or contains in eph.all_text:
                    return eph
            return None

        return self.wait_for(found, timeout, f"an ephemeral to {user} containing {contains!r}")

    def wait_for_view(self, callback_id: str | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            views = self.views(callback_id, open_only=True)
            return views[-1] if views else None

        return self.wait_for(found, timeout, f"an open view {callback_id!r}")

    def dump(self, last_calls: int = 15) -> str:
        """The transcript and the last calls: what a failing test prints."""
        from bot.sandbox.transcript import render  # here: transcript imports this module

        with self._lock:
            calls = self.calls[-last_calls:]
        lines = [render(self), "", f"last {len(calls)} Web API calls:"]
        for c in calls:
            outcome = "ok" if c.ok else f"{c.status} {c.error or c.response}"
            args = {k: v for k, v in c.params.items() if k not in ("blocks", "view")}
            lines.append(f"  {c.method} {json.dumps(args, default=str)[:160]} -> {outcome}")
        return "\n".join(lines)
