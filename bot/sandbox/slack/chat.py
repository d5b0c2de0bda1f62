"""`chat.*`: post, update and delete messages, post ephemerals, and permalinks."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from typing import Any

from bot.sandbox.slack.constants import BOT_ID, BOT_USER_ID, SLACKBOT_ID, TEAM_DOMAIN
from bot.sandbox.slack.core import SandboxCore, SlackError, _truthy
from bot.sandbox.slack.workspace import Ephemeral, Message, MessageVersion


class ChatMethods(SandboxCore):
    """chat.* (lock held)."""

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
