"""What tests look at: the workspace as it is now (users, conversations, messages, ephemerals,
response_url posts, views, files, calls and refusals), waiting for something to show up, and
the dump a failing test prints.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.sandbox.slack.constants import REFUSAL_ERRORS
from bot.sandbox.slack.core import SandboxCore
from bot.sandbox.slack.transcript import render
from bot.sandbox.slack.workspace import (
    Call,
    Conversation,
    Ephemeral,
    Interaction,
    Message,
    ResponsePost,
    SandboxFile,
    User,
    Usergroup,
)

T = TypeVar("T")


class Inspection(SandboxCore):
    """What tests look at and wait for; each takes the lock itself."""

    # ---- the workspace as it is now --------------------------------------------------------------

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

    def uploaded_files(self) -> list[SandboxFile]:
        """Files whose upload was completed, oldest first."""
        with self._lock:
            return [f for f in self._files.values() if f.completed]

    def shared_files(self) -> list[SandboxFile]:
        """Completed uploads Slack shows in a channel (shared, not deleted), oldest first."""
        with self._lock:
            return [f for f in self._files.values() if f.completed and f.shares and not f.deleted]

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

    # ---- waiting, and what a failing test prints -------------------------------------------------

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

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 15.0, what: str = "") -> T:
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
        timeout: float = 15.0,
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
        timeout: float = 15.0,
    ) -> Message:
        return self.wait_for_message(user, contains, with_button=with_button, timeout=timeout)

    def wait_for_ephemeral(self, user: str, contains: str | None = None, *, timeout: float = 15.0) -> Ephemeral:
        def found() -> Ephemeral | None:
            for eph in reversed(self.ephemerals_to(user)):
                if contains is None or contains in eph.all_text:
                    return eph
            return None

        return self.wait_for(found, timeout, f"an ephemeral to {user} containing {contains!r}")

    def wait_for_view(self, callback_id: str | None = None, *, timeout: float = 15.0) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            views = self.views(callback_id, open_only=True)
            return views[-1] if views else None

        return self.wait_for(found, timeout, f"an open view {callback_id!r}")

    def dump(self, last_calls: int = 15) -> str:
        """The transcript and the last calls: what a failing test prints."""
        with self._lock:
            calls = self.calls[-last_calls:]
        lines = [render(self), "", f"last {len(calls)} Web API calls:"]
        for c in calls:
            outcome = "ok" if c.ok else f"{c.status} {c.error or c.response}"
            args = {k: v for k, v in c.params.items() if k not in ("blocks", "view")}
            lines.append(f"  {c.method} {json.dumps(args, default=str)[:160]} -> {outcome}")
        return "\n".join(lines)
