"""The sandbox workspace's fixed identity and the tables its checks read.

The team and the bot, the token and scopes a default install has, the scope each Web API method
needs, the errors that count as refusals (a correct bot never gets them), Slack's limits, and
the people every sandbox starts with.
"""

from __future__ import annotations

TEAM_ID = "T0SANDBOX"
TEAM_DOMAIN = "sandbox"
TEAM_NAME = "Sandbox"
APP_ID = "A0SANDBOX"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "incident-bot"
SLACKBOT_ID = "USLACKBOT"

DEFAULT_TOKENS = frozenset({"xoxb-sandbox"})
# App-level tokens (`xapp-`): they open Socket Mode connections (apps.connections.open) and nothing else.
APP_TOKENS = frozenset({"xapp-sandbox"})
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
    "apps.connections.open": None,  # connections:write, a scope of the app-level token
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
    "views.publish": None,  # no scope: the Home tab must be enabled in the app's settings instead
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "files.info": "files:read",
    "files.delete": "files:write",
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
        "not_allowed_token_type",
    }
)

MAX_TEXT = 40_000
MAX_TOPIC = 250
MAX_CHANNEL_NAME = 80
TRIGGER_TTL_SECONDS = 3.0  # Slack: a trigger_id expires three seconds after it is issued
MAX_VIEW_STACK = 3
MAX_VIEW_BYTES = 250_000  # views.publish: view_too_large beyond 250 kB

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
