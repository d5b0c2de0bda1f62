"""`conversations.*`: create, name and describe, invite, join, open, archive, list, and read
history, threads and members, with Slack's cursor pagination.
"""

from __future__ import annotations

import base64
import copy
import re
import time
from dataclasses import replace
from typing import Any, TypeVar

from bot.sandbox.slack.constants import BOT_USER_ID, MAX_CHANNEL_NAME, MAX_TOPIC
from bot.sandbox.slack.core import SandboxCore, SlackError, _truthy
from bot.sandbox.slack.workspace import Conversation, Message

T = TypeVar("T")


_CHANNEL_NAME = re.compile(r"^[a-z0-9_\-]+$")


class ConversationsMethods(SandboxCore):
    """conversations.* (lock held)."""

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

    # ---- helpers ---------------------------------------------------------------------------------

    def _require_member(self, conv: Conversation) -> None:
        if BOT_USER_ID not in conv.members:
            raise SlackError("not_in_channel")

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
