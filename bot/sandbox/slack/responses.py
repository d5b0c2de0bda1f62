"""The other half of the wire: response_urls and what their POSTs show (a reply, a replaced or
deleted original), slash-command acks, and what the platform itself records: its notices to a
user, and the commands, clicks and submissions people make (for the transcript).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from typing import Any

from bot.sandbox.slack.constants import BOT_ID, BOT_USER_ID, SLACKBOT_ID
from bot.sandbox.slack.core import SandboxCore, SlackError, _truthy
from bot.sandbox.slack.workspace import (
    Call,
    Ephemeral,
    Interaction,
    Message,
    MessageVersion,
    ResponseContext,
    ResponsePost,
)


class Responses(SandboxCore):
    """response_url posts and acks, shown where Slack would show them."""

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
