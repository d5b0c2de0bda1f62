"""Setting up the world a test needs: the seeded workspace, people, user groups and channels;
and people acting in it outside the Web API (posting, inviting, deleting).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

from bot.sandbox.slack.constants import BOT_ID, BOT_NAME, BOT_USER_ID, SEED_USERS, SLACKBOT_ID
from bot.sandbox.slack.core import SandboxCore, SlackError
from bot.sandbox.slack.workspace import Conversation, Message, User, Usergroup


class World(SandboxCore):
    """World set-up, and people in the workspace."""

    # ---- world set-up ----------------------------------------------------------------------------

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

    def deactivate_user(self, user_id: str) -> None:
        """An admin deactivates `user_id`: users.info shows `deleted: true`, lookups by email fail."""
        with self._lock:
            self._users[user_id] = replace(self._users[user_id], deleted=True)

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

    def invite(self, channel: str, user: str) -> None:
        """Someone in the workspace invites `user` (the bot, say) to `channel`, as a person would."""
        with self._lock:
            conv = self._conversations[channel]
            if user not in conv.members:
                self._conversations[channel] = replace(conv, members=(*conv.members, user))

    # ---- people in the workspace -----------------------------------------------------------------

    def user_says(self, channel: str, user: str, text: str) -> Message:
        """A person posts `text` in `channel`, as they would from the Slack client."""
        with self._lock:
            conv = self._conversation(channel)
            return self._add_message(Message(channel=conv.id, ts=self._next_ts(), user=user, text=text))

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
