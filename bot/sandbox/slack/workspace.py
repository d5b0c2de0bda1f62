"""What the world holds: users, user groups, conversations, files, messages (and their earlier
versions), ephemerals, response_url posts, interactions, and the record of each Web API call.

Public snapshots are frozen; the sandbox replaces them on change.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bot.sandbox.slack.blockkit import TEXT_TYPES
from bot.sandbox.slack.constants import APP_ID, BOT_NAME, BOT_USER_ID, TEAM_DOMAIN, TEAM_ID


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
    deleted: bool = False  # deactivated: users.info says so, users.lookupByEmail no longer finds them

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
            "deleted": self.deleted,
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
    channels: tuple[str, ...] = ()  # where it is shared (Slack shares it after the completion)
    shares: tuple[tuple[str, str, str | None], ...] = ()  # (channel, ts of the sharing message, thread_ts)
    deleted: bool = False

    def to_api(self) -> dict[str, Any]:
        shares: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for channel, ts, thread_ts in self.shares:
            share: dict[str, Any] = {"ts": ts, "reply_users": [], "reply_count": 0, "team_id": TEAM_ID}
            if thread_ts:
                share["thread_ts"] = thread_ts
            shares.setdefault("public" if channel.startswith("C") else "private", {}).setdefault(channel, []).append(
                share
            )
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
            "shares": shares,
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
