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

`SlackSandbox` is assembled here from one mixin per concern: the server (`server`), fault
injection (`faults`), Slack's rate limits (`limits`), response_urls and acks (`responses`), one module per API family
(`auth`, `chat`, `conversations`, `users`, `views`, `files`), world set-up (`world`) and what
tests look at (`inspect`), all on the state and helpers of `core`. Block Kit rules are in
`blockkit`, the workspace's records in `workspace`, fixed names and tables in `constants`;
`platform` plays the Slack platform and `transcript` renders what Slack shows.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.sandbox.slack.auth import AuthMethods
from bot.sandbox.slack.chat import ChatMethods
from bot.sandbox.slack.constants import APP_TOKENS, DEFAULT_SCOPES, DEFAULT_TOKENS, TRIGGER_TTL_SECONDS
from bot.sandbox.slack.conversations import ConversationsMethods
from bot.sandbox.slack.faults import Faults
from bot.sandbox.slack.files import FilesMethods
from bot.sandbox.slack.inspect import Inspection
from bot.sandbox.slack.limits import RateLimits
from bot.sandbox.slack.responses import Responses
from bot.sandbox.slack.server import Server
from bot.sandbox.slack.socket_mode import SocketModeMethods
from bot.sandbox.slack.users import UsersMethods
from bot.sandbox.slack.views import ViewsMethods
from bot.sandbox.slack.world import World

__all__ = ["SlackSandbox"]


class SlackSandbox(
    Server,
    RateLimits,
    Faults,
    Responses,
    AuthMethods,
    ChatMethods,
    ConversationsMethods,
    UsersMethods,
    ViewsMethods,
    FilesMethods,
    SocketModeMethods,
    World,
    Inspection,
):
    """The Slack Web API and workspace, served on 127.0.0.1 for the bot's real `WebClient`."""

    def __init__(
        self,
        *,
        tokens: Iterable[str] = DEFAULT_TOKENS,
        app_tokens: Iterable[str] = APP_TOKENS,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        seed: bool = True,
        trigger_ttl: float = TRIGGER_TTL_SECONDS,
        rate_limits: bool = True,
    ) -> None:
        """`rate_limits=False` answers calls however fast they come (a baseline, a burst test)."""
        app_tokens = frozenset(app_tokens)
        super().__init__(tokens=frozenset(tokens) | app_tokens, scopes=scopes, trigger_ttl=trigger_ttl)
        self.app_tokens = app_tokens
        self.set_rate_limits(rate_limits)
        self._methods = {
            "api.test": self._api_test,
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
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
            "views.publish": self._views_publish,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
            "files.delete": self._files_delete,
        }
        if seed:
            self._seed()

    def stop(self) -> None:
        self.close_socket_mode()
        super().stop()
