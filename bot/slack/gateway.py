"""Thin adapter over slack_sdk's WebClient: the calls the bot makes, with retries.

Every call first takes a token from the process's `Pacer` (bot.slack.pacing), so the bot keeps
within Slack's limits. 5xx answers and dropped connections are retried by slack_sdk's own retry
handlers, while a sending deadline leaves room (`calls_until`). A rate limit met anyway (429 +
`Retry-After`, `error: ratelimited`) is retried in-process only briefly (once, for a
`Retry-After` of at most `RATE_LIMIT_WAIT_MAX_S`); a longer one raises, and the delivery loop is
its own retry (it keeps the row, honours `Retry-After` and sends everything else meanwhile), so a
thread never sleeps out a long rate limit. An `ok: false` answer raises SlackApiError for the
caller to decide.

The one call made before an ack (views.open) goes through a second client with no retry handlers
and a short timeout (`make_request_client`): sleeping through a Retry-After there misses Slack's
3 s; it takes no token from the pacer either (a person's form never waits for one).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.handler import RetryHandler

from bot.core import counters as metrics
from bot.domain.deliveries import RATELIMITED
from bot.slack.pacing import Pacer, call_channel

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"
POST_EVENT_TYPE = "incident_bot_post"
# The longest `Retry-After` a call sleeps out in-process (once); longer waits are the caller's.
RATE_LIMIT_WAIT_MAX_S = 2.0
# slack_sdk's own retries of a call that timed out or lost its connection (each may still land).
CONNECTION_RETRIES = 3
NAME_TTL_S = 3600.0  # how long a display name is trusted (a rename shows in the next hour's drafts)


def retry_after_s(headers: Mapping[str, Any] | None) -> float | None:
    """`Retry-After` in seconds from a response's headers (values as strings or lists of them)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) and value else value
            try:
                return max(0.0, float(str(raw).strip()))
            except ValueError:
                return None
    return None


def rate_limited(exc: SlackApiError) -> bool:
    """Slack refused the call for its rate limit (429, `ratelimited`): nothing was carried out."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or error_code(exc) == RATELIMITED


# views.open before the ack: Slack gives the ack 3 s, of which the rest of the request needs some.
REQUEST_TIMEOUT_S = 2.0


# Room a Slack call needs before a sending deadline, in client timeouts: one for the call, one
# more for a post Slack was slow to answer, which often lands after the client gave up.
CALL_ROOM_TIMEOUTS = 2
_budget = threading.local()


class DeadlinePassed(Exception):
    """A Slack call was not made: the sending deadline is too near for it (or the sender was told
    to stop), so whoever takes the delivery over after the deadline decides, by asking Slack."""


# The calls that make something appear in Slack: one whose answer never came may have landed.
POSTING_METHODS = frozenset({"chat.postMessage", "files.completeUploadExternal", "files.upload"})


@dataclass
class Calls:
    """What `calls_until` saw: whether a post went out whose outcome is unknown (no answer, or a 5xx)."""

    in_doubt: bool = False
    # A call of the block was sent again after no answer or a 5xx (slack_sdk's own retries):
    # the first request may still be carried out, after later calls (an edit landing stale).
    resent: bool = False


@contextmanager
def calls_until(
    deadline: float, stopping: threading.Event | None = None, renew: Callable[[], float | None] | None = None
) -> Iterator[Calls]:
    """Slack calls this thread makes in the block (slack_sdk's own retries included) each start
    only while `deadline` (a `time.monotonic()` value) leaves room for them to finish and land,
    and while `stopping` is not set; otherwise `DeadlinePassed` is raised instead of calling.

    `renew`, when given, is asked for a later deadline once the room runs short (a claim in the
    store extended): the new deadline, or None when the claim is no longer this caller's."""
    outer = getattr(_budget, "limit", None), getattr(_budget, "calls", None)
    calls = Calls()
    _budget.limit, _budget.calls = (deadline, stopping, renew), calls
    try:
        yield calls
    finally:
        _budget.limit, _budget.calls = outer


def in_doubt() -> bool:
    """Whether a post this thread made within its `calls_until` may have landed unanswered."""
    calls: Calls | None = getattr(_budget, "calls", None)
    return calls is not None and calls.in_doubt


def _note_failure(api_method: str, exc: Exception) -> None:
    calls: Calls | None = getattr(_budget, "calls", None)
    if calls is None or api_method not in POSTING_METHODS:
        return
    status = getattr(getattr(exc, "response", None), "status_code", 200) if isinstance(exc, SlackApiError) else 599
    if status >= 500:
        calls.in_doubt = True


def _room_for(timeout: float, wait: float = 0.0) -> str | None:
    """Why a call (after `wait` seconds) may not start now, or None when it may."""
    limit = getattr(_budget, "limit", None)
    if limit is None:
        return None
    deadline, stopping, renew = limit
    if stopping is not None and stopping.is_set():
        return "the sender was told to stop"
    left = deadline - time.monotonic() - wait
    if left < CALL_ROOM_TIMEOUTS * timeout and renew is not None:
        try:
            renewed = renew()
        except Exception:  # noqa: BLE001 - the store unreachable: not renewed, the call waits
            log.warning("could not extend the claim behind these Slack calls", exc_info=True)
            renewed = None
        if renewed is None:
            return "the claim behind these calls could not be extended"
        _budget.limit = (renewed, stopping, renew)
        left = renewed - time.monotonic() - wait
    if left < CALL_ROOM_TIMEOUTS * timeout:
        return f"{left:.1f} s left before the sending deadline"
    return None


class _Bounded:
    """A retry handler that retries only while the thread's sending deadline leaves room."""

    timeout: float = 10.0

    def can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        wait = 1.0
        if response is not None and response.status_code == 429:
            for name, values in (response.headers or {}).items():
                if name.lower() == "retry-after" and values:
                    with suppress(ValueError):
                        wait = float(values[0]) + 1.0
        if _room_for(self.timeout, wait) is not None:
            return False
        retry = bool(super().can_retry(state=state, request=request, response=response, error=error))  # type: ignore[misc]
        calls: Calls | None = getattr(_budget, "calls", None)
        if (
            retry
            and calls is not None
            and (error is not None or (response is not None and response.status_code >= 500))
        ):
            calls.resent = True
        return retry


class _BoundedConnectionErrors(_Bounded, ConnectionErrorRetryHandler):
    pass


class _BoundedRateLimits(_Bounded, RateLimitErrorRetryHandler):
    """Slack's rate limit, slept out in-process only when its `Retry-After` is short."""

    max_wait_s: float = RATE_LIMIT_WAIT_MAX_S

    def can_retry(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> bool:
        if response is not None and response.status_code == 429:
            wait = retry_after_s(response.headers)
            if wait is None or wait > self.max_wait_s:
                return False
        return super().can_retry(state=state, request=request, response=response, error=error)


class _BoundedServerErrors(_Bounded, ServerErrorRetryHandler):
    pass


class CountingWebClient(WebClient):
    """slack_sdk's client, paced by `pacer` (a token per call, in lane order), counting the calls
    that fail after its own retries (for /metrics).

    Inside `calls_until`, a call starts only while the sending deadline leaves room for it (also
    after waiting for its token)."""

    pacer: Pacer | None = None

    def api_call(self, api_method: str, **kwargs: Any) -> Any:  # type: ignore[override]
        why = _room_for(float(self.timeout))
        if why is not None:
            raise DeadlinePassed(f"{api_method} not called: {why}")
        channel = call_channel(kwargs)
        if self.pacer is not None:
            self.pacer.acquire(api_method, channel)
            why = _room_for(float(self.timeout))
            if why is not None:
                raise DeadlinePassed(f"{api_method} not called after its turn: {why}")
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            metrics.SLACK_API_ERRORS.labels(api_method, error_code(exc)).inc()
            _note_failure(api_method, exc)
            if self.pacer is not None and rate_limited(exc):
                wait = retry_after_s(getattr(exc.response, "headers", None))
                self.pacer.rate_limited(api_method, channel, 1.0 if wait is None else wait)
            raise
        except Exception as exc:
            metrics.SLACK_API_ERRORS.labels(api_method, type(exc).__name__).inc()
            _note_failure(api_method, exc)
            raise
        if self.pacer is not None and api_method == "chat.postMessage":
            self.pacer.learn_channel(channel, str(response.get("channel") or "") or None)
        return response


def make_client(token: str, base_url: str | None = None, timeout: int = 10, pacer: Pacer | None = None) -> WebClient:
    """The bot's client; `pacer` (one per process) keeps its calls within Slack's limits."""
    base = base_url or DEFAULT_API_URL
    if not base.endswith("/"):
        base += "/"
    handlers: list[RetryHandler] = [
        _BoundedConnectionErrors(max_retry_count=CONNECTION_RETRIES),
        # Once, and only a short Retry-After: a longer one is the caller's (the delivery loop's).
        _BoundedRateLimits(max_retry_count=1),
        _BoundedServerErrors(max_retry_count=3),
    ]
    for handler in handlers:
        handler.timeout = float(timeout)  # type: ignore[attr-defined]
    client = CountingWebClient(token=token, base_url=base, timeout=timeout, retry_handlers=handlers)
    client.pacer = pacer
    return client


def make_request_client(token: str, base_url: str | None = None, timeout: float = REQUEST_TIMEOUT_S) -> WebClient:
    """The client for the one call made before an ack (views.open): no retry handlers, so a 429
    is answered at once instead of slept through (Retry-After can be longer than the 3 s Slack
    gives the ack), and a short timeout, so a hanging Slack cannot hold the ack past it either."""
    base = base_url or DEFAULT_API_URL
    if not base.endswith("/"):
        base += "/"
    # slack_sdk hands `timeout` to urllib as is: a float works although it is annotated int.
    return CountingWebClient(token=token, base_url=base, timeout=timeout, retry_handlers=[])  # type: ignore[arg-type]


def error_code(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "unknown_error")
    except Exception:  # noqa: BLE001 - a malformed error body must not hide the original error
        return "unknown_error"


def failure_code(exc: BaseException) -> str:
    """Slack's error code when Slack refused the call, else the failure's type (`TimeoutError`)."""
    return error_code(exc) if isinstance(exc, SlackApiError) else type(exc).__name__


class SlackGateway:
    """The Slack Web API calls the bot makes, named for what they do."""

    def __init__(self, client: WebClient, request_client: WebClient | None = None) -> None:
        self.client = client
        # For calls made before an ack (views.open): never sleeps on Retry-After (make_request_client).
        self.request_client = request_client or client
        self._email_cache: dict[str, str] = {}
        self._dm_cache: dict[str, str] = {}
        # Display names for text read outside Slack (the post-mortem): kept for NAME_TTL_S, so a
        # draft upload retried under a struggling Slack does not spend its sending deadline asking
        # for the same names again, and makes progress from one try to the next.
        self._name_cache: dict[str, tuple[float, str | None]] = {}
        self._cache_lock = threading.Lock()
        self._bot_user_id: str | None = None

    def in_doubt_for(self) -> float:
        """Seconds after a call that failed began in which its request may still land in Slack:
        each of the client's own retries of a timed-out call waits up to one timeout, and a
        request Slack was slow to answer may be carried out after the client gave up on it."""
        return float(self.client.timeout) * (CONNECTION_RETRIES + 2)

    def pacing_wait(self, method: str, channel: str | None = None) -> float:
        """About how long a call to `method` (in `channel`) made now would wait for the pacer's
        token (0: none, or no pacer)."""
        pacer = getattr(self.client, "pacer", None)
        return pacer.wait_for(method, channel) if isinstance(pacer, Pacer) else 0.0

    def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        key: str | None = None,
        also: Sequence[str] = (),
        broadcast: bool = False,
    ) -> tuple[str, str]:
        """Post a message; returns (channel id, ts).

        `key` is stored in the message's metadata so `find_posted` can tell, after a crash,
        whether a post that was under way when the process died reached Slack; `also` are the
        keys of the other deliveries the message carries (lines owed to one thread at once),
        kept space-separated in one string (metadata values are strings, numbers or booleans).
        `broadcast`: a thread reply also shown in the channel (Slack's "Also send to #channel").
        """
        payload: dict[str, Any] = {"key": key, **({"also": " ".join(also)} if also else {})}
        metadata = {"event_type": POST_EVENT_TYPE, "event_payload": payload} if key else None
        extra: dict[str, Any] = {"reply_broadcast": True} if broadcast and thread_ts else {}
        response = self.client.chat_postMessage(
            channel=channel,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            unfurl_links=False,
            metadata=metadata,
            **extra,
        )
        return str(response["channel"]), str(response["ts"])

    def find_posted(self, channel: str, key: str, oldest: float, thread_ts: str | None = None) -> str | None:
        """The ts of the bot's message carrying `key` posted in `channel` (or in the thread under
        `thread_ts`: history leaves thread replies out) since `oldest`, if any."""
        for message in self._recent(channel, oldest, thread_ts):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            if payload.get("key") == key or key in str(payload.get("also") or "").split():
                return str(message["ts"])
        return None

    def find_file(self, channel: str, filename: str, oldest: float, thread_ts: str | None = None) -> str | None:
        """The id of a file named `filename` shared in `channel` (or the thread) since `oldest`:
        files carry no metadata, but the message that shares one lists it."""
        for message in self._recent(channel, oldest, thread_ts):
            for shared in message.get("files") or []:
                if shared.get("name") == filename and shared.get("id"):
                    return str(shared["id"])
        return None

    def _recent(self, channel: str, oldest: float, thread_ts: str | None) -> Iterator[dict[str, Any]]:
        cursor = None
        for _ in range(5):  # a few pages of recent history; a crash window is seconds long
            if thread_ts:
                response = self.client.conversations_replies(
                    channel=channel,
                    ts=thread_ts,
                    oldest=f"{oldest:.6f}",
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            else:
                response = self.client.conversations_history(
                    channel=channel,
                    oldest=f"{oldest:.6f}",
                    include_all_metadata=True,
                    limit=200,
                    cursor=cursor,
                )
            yield from response.get("messages") or []
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def update(self, channel: str, ts: str, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])

    def delete(self, channel: str, ts: str) -> None:
        """Delete one of the bot's own messages."""
        self.client.chat_delete(channel=channel, ts=ts)

    def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        self.client.chat_postEphemeral(channel=channel, user=user, text=text)

    def create_channel(self, name: str) -> tuple[str, str]:
        """Create a public channel; when the name is taken, try `name-2`, `name-3`, ...

        A name can be taken by an earlier attempt that crashed before its id was stored, or by
        an unrelated channel: either way the incident gets a channel of its own.
        """
        candidates = [name] + [f"{name[: 80 - len(str(i)) - 1]}-{i}" for i in range(2, 10)]
        for candidate in candidates:
            try:
                response = self.client.conversations_create(name=candidate, is_private=False)
            except SlackApiError as exc:
                if error_code(exc) == "name_taken":
                    continue
                raise
            channel = response["channel"]
            return str(channel["id"]), str(channel["name"])
        raise RuntimeError(f"every channel name from {name} to {candidates[-1]} is taken")

    def join(self, channel: str) -> None:
        """Join a public channel (by ID); a no-op when already a member."""
        self.client.conversations_join(channel=channel)

    def set_topic(self, channel: str, topic: str) -> None:
        self.client.conversations_setTopic(channel=channel, topic=topic)

    def invite(self, channel: str, users: list[str]) -> None:
        for user in dict.fromkeys(users):
            if user == self._bot_user_id:
                continue  # the declarer of an incident an alert opened: the bot, already there
            try:
                self.client.conversations_invite(channel=channel, users=user)
            except SlackApiError as exc:
                if error_code(exc) not in {"already_in_channel", "cant_invite_self"}:
                    raise

    def open_dm(self, user: str) -> str:
        with self._cache_lock:
            cached = self._dm_cache.get(user)
        if cached:
            return cached
        response = self.client.conversations_open(users=user)
        channel = str(response["channel"]["id"])
        with self._cache_lock:
            self._dm_cache[user] = channel
        return channel

    def channel_id(self, name: str) -> str | None:
        """The ID of a public channel by name (IDs pass through)."""
        name = name.lstrip("#")
        if re.fullmatch(r"[CG][A-Z0-9]{2,}", name):
            return name
        found = self.find_channel(name)
        return str(found["id"]) if found else None

    def find_channel(self, name: str) -> dict[str, Any] | None:
        """A public channel by name, paging through conversations.list."""
        cursor = None
        for _ in range(50):
            response = self.client.conversations_list(
                types="public_channel", exclude_archived=True, limit=1000, cursor=cursor
            )
            for channel in response.get("channels") or []:
                if channel.get("name") == name:
                    return dict(channel)
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str(self.client.auth_test()["user_id"])
        return self._bot_user_id

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        """views.open, before the ack (its trigger_id lasts 3 s): through the request client, so
        a 429 raises at once rather than being retried after Retry-After."""
        self.request_client.views_open(trigger_id=trigger_id, view=view)

    def user_info(self, user: str) -> dict[str, Any]:
        """A user's record (users.info): `deleted` is true for a deactivated account;
        SlackApiError `user_not_found` for an ID no user has."""
        return dict(self.client.users_info(user=user)["user"])

    def lookup_email(self, email: str) -> dict[str, Any]:
        """The active user with this email, asked afresh (users.lookupByEmail); SlackApiError
        `users_not_found` when nobody has it, or its holder is deactivated."""
        return dict(self.client.users_lookupByEmail(email=email)["user"])

    def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Publish `user`'s App Home tab (views.publish: no scope, the Home tab enabled in the app)."""
        self.client.views_publish(user_id=user, view=view)

    def display_name(self, user: str) -> str | None:
        """The name people know `user` by (profile display name, else real name), None if Slack
        cannot say. users.info, Tier 4; for text read outside Slack, such as the post-mortem.
        A name found (or a user Slack does not know) is remembered for NAME_TTL_S."""
        with self._cache_lock:
            cached = self._name_cache.get(user)
        if cached is not None and time.monotonic() - cached[0] < NAME_TTL_S:
            return cached[1]
        try:
            found = self.client.users_info(user=user)["user"]
        except SlackApiError as exc:
            log.info("no name for %s (users.info: %s)", user, error_code(exc))
            if rate_limited(exc) or error_code(exc) not in {"user_not_found", "user_not_visible"}:
                return None  # asked again next time
            found = {}
        profile = found.get("profile") or {}
        named = None
        for name in (profile.get("display_name"), profile.get("real_name"), found.get("real_name"), found.get("name")):
            if isinstance(name, str) and name.strip():
                named = name.strip()
                break
        with self._cache_lock:
            self._name_cache[user] = (time.monotonic(), named)
        return named

    def user_by_email(self, email: str) -> str:
        key = email.lower()
        with self._cache_lock:
            cached = self._email_cache.get(key)
        if cached:
            return cached
        response = self.client.users_lookupByEmail(email=email)
        user = str(response["user"]["id"])
        with self._cache_lock:
            self._email_cache[key] = user
        return user

    def usergroups(self) -> list[dict[str, Any]]:
        """The workspace's enabled user groups (usergroups.list answers in one page)."""
        response = self.client.usergroups_list(include_disabled=False)
        return [dict(group) for group in response.get("usergroups") or []]

    def usergroup_members(self, usergroup_id: str) -> list[str]:
        """User IDs in a user group; SlackApiError `no_such_subteam` if it does not exist or is disabled."""
        response = self.client.usergroups_users_list(usergroup=usergroup_id)
        return [str(user) for user in response.get("users") or []]

    def upload_file(
        self,
        channel: str,
        thread_ts: str | None,
        filename: str,
        title: str,
        content: str,
        comment: str,
        on_file_id: Callable[[str], None] = lambda _: None,
    ) -> str:
        """Upload a text file to be shared in a channel (or a thread) with a comment; its file id.

        files_upload_v2's three calls, made one by one so that the file's id is known (and handed
        to `on_file_id`, to be stored) before Slack is asked to share it: files.getUploadURLExternal,
        a POST of the bytes to the URL it returns, files.completeUploadExternal. Slack answers that
        last call before it shares the file, and may never share it: `file_shared` says.
        """
        data = content.encode("utf-8")
        opened = self.client.files_getUploadURLExternal(filename=filename, length=len(data))
        file_id, url = str(opened["file_id"]), str(opened["upload_url"])
        on_file_id(file_id)
        # The SDK's own step 2 of files_upload_v2 (same URL handling, proxy, TLS and timeout).
        sent = self.client._upload_file(
            url=url,
            data=data,
            logger=self.client._logger,
            timeout=self.client.timeout,
            proxy=self.client.proxy,
            ssl=self.client.ssl,
        )
        if sent.status != 200:
            raise SlackRequestError(f"the upload URL answered {sent.status}")
        self.client.files_completeUploadExternal(
            files=[{"id": file_id, "title": title}], channel_id=channel, thread_ts=thread_ts, initial_comment=comment
        )
        return file_id

    def file_shared(self, file_id: str, channel: str) -> bool | None:
        """Whether Slack shows the file in `channel` yet; None if Slack has no such file (never
        completed, or deleted)."""
        try:
            info = self.client.files_info(file=file_id).get("file") or {}
        except SlackApiError as exc:
            if error_code(exc) == "file_not_found":
                return None
            raise
        shares = info.get("shares") or {}
        if any(channel in (shares.get(kind) or {}) for kind in ("public", "private")):
            return True
        return any(channel in (info.get(kind) or []) for kind in ("channels", "groups", "ims"))

    def delete_file(self, file_id: str) -> None:
        """Delete one of the bot's files (one Slack never shared, so that it cannot appear later)."""
        try:
            self.client.files_delete(file=file_id)
        except SlackApiError as exc:
            if error_code(exc) != "file_not_found":
                raise

    def file_permalink(self, file_id: str) -> str | None:
        response = self.client.files_info(file=file_id)
        link = (response.get("file") or {}).get("permalink")
        return str(link) if link else None

    def permalink(self, channel: str, ts: str) -> str | None:
        link = self.client.chat_getPermalink(channel=channel, message_ts=ts).get("permalink")
        return str(link) if link else None

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """One message by its ts, top level or in a thread; None if it no longer exists."""
        history = self.client.conversations_history(channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1)
        for message in history.get("messages") or []:
            if message.get("ts") == ts:
                return dict(message)
        # A thread reply is not in the channel's history: ask for the thread it is in.
        try:
            replies = self.client.conversations_replies(
                channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True, limit=10
            )
        except SlackApiError as exc:
            if error_code(exc) in {"thread_not_found", "message_not_found"}:
                return None
            raise
        for message in replies.get("messages") or []:
            if message.get("ts") == ts:
                return dict(message)
        return None
