"""A thin PagerDuty client: Events API v2 out, v3 webhook signatures in, one REST read.

Spoken as developer.pagerduty.com documents it:

    POST {events_url}   (default https://events.pagerduty.com/v2/enqueue)
         {"routing_key", "event_action": trigger|acknowledge|resolve, "dedup_key", "payload", "links"}
         -> 202 {"status": "success", "message": "Event processed", "dedup_key": ...}
         -> 400 {"status": "invalid event", "message": ..., "errors": [...]}   (not retried)
         -> 429 too many events (about 120 a minute per integration key), 5xx: retried
    GET  {api_url}/users/{id}   `Authorization: Token token=<api token>` -> {"user": {"email", ...}}

A v3 webhook carries `X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>`, several
comma-separated while a secret is being rotated; `signed` accepts any valid one, compared in
constant time. Secrets (routing key, API token) never appear in `repr`, errors or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from bot.domain.policy import PagerDutyConfig

log = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
API_URL = "https://api.pagerduty.com"
DEFAULT_TIMEOUT_S = 5.0
EVENTS_PER_MINUTE = 120  # "approximately 120 calls/minute per integration key" (Events API rate limits)
_MESSAGE_CHARS = 300


class PagerDutyError(Exception):
    """An Events API (or REST) call failed: `status_code` None when no answer came at all."""

    def __init__(self, status_code: int | None, message: str, retry_after: float | None = None) -> None:
        prefix = f"HTTP {status_code}" if status_code is not None else "no answer"
        super().__init__(f"PagerDuty: {prefix}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """429, 5xx and network failures may succeed later; any other answer will not."""
        code = self.status_code
        return code is None or code == 429 or code >= 500


class _Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "[redacted]"

    __str__ = __repr__


class Pace:
    """PagerDuty's documented limit, kept by the sender: about 120 events a minute per
    integration key over a rolling window. `take` books a slot, or says how long until one frees,
    so the bot rarely meets a 429 at all (it still retries one with backoff)."""

    def __init__(self, events: int = EVENTS_PER_MINUTE, window_s: float = 60.0, margin_s: float = 1.0) -> None:
        self.events = events
        # A slot is booked before the request leaves and counted by PagerDuty when it arrives:
        # the margin keeps the two windows from overlapping by the request's own travel time.
        self.window_s = window_s + margin_s
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self, now: float | None = None) -> float:
        """0 and a slot booked, or the seconds to wait before asking again."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            if len(self._sent) < self.events:
                self._sent.append(now)
                return 0.0
            return max(0.01, self.window_s - (now - self._sent[0]))


class PagerDutyClient:
    """One Events API v2 integration (its routing key), and optionally a REST API token."""

    def __init__(
        self,
        routing_key: str,
        events_url: str = EVENTS_URL,
        *,
        api_token: str | None = None,
        api_url: str = API_URL,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        for url in (events_url, api_url):
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ValueError(f"PagerDuty URLs must be http(s) URLs, got {url!r}")
        routing_key = routing_key.strip()
        if not routing_key or not routing_key.isprintable() or any(c.isspace() for c in routing_key):
            raise ValueError("the PagerDuty routing key is empty or contains whitespace/control characters")
        self.events_url = events_url
        self.api_url = api_url.rstrip("/")
        self._routing_key = _Secret(routing_key)
        self._api_token = _Secret(api_token.strip()) if api_token and api_token.strip() else None
        self.timeout = timeout
        self.pace = Pace()

    @property
    def routing_key(self) -> str:
        return self._routing_key.reveal()

    @property
    def reads_users(self) -> bool:
        return self._api_token is not None

    def __repr__(self) -> str:
        return f"PagerDutyClient(events_url={self.events_url!r}, routing_key=[redacted])"

    def send(self, event: dict[str, Any]) -> str:
        """Enqueue one event; returns the dedup_key PagerDuty answered with (202)."""
        status, body = self._call("POST", self.events_url, event, {})
        if status != 202 or not isinstance(body, dict) or body.get("status") != "success":
            raise PagerDutyError(status, f"unexpected answer {_short(body)}")
        return str(body.get("dedup_key") or event.get("dedup_key") or "")

    def user_email(self, user_id: str, timeout: float | None = None) -> str | None:
        """The email of a PagerDuty user (REST API v2); None without a token, for an unknown user,
        or when PagerDuty does not answer within `timeout` (the client's own by default)."""
        if self._api_token is None or not user_id:
            return None
        headers = {
            "Authorization": f"Token token={self._api_token.reveal()}",
            "Accept": "application/vnd.pagerduty+json;version=2",
        }
        try:
            url = f"{self.api_url}/users/{quote(user_id, safe='')}"
            status, body = self._call("GET", url, None, headers, timeout=timeout)
        except PagerDutyError as exc:
            log.warning("could not read PagerDuty user %s: %s", user_id, exc)
            return None
        user = body.get("user") if isinstance(body, dict) else None
        email = user.get("email") if isinstance(user, dict) else None
        return email if status == 200 and isinstance(email, str) and "@" in email else None

    def _call(
        self,
        method: str,
        url: str,
        payload: dict[str, Any] | None,
        headers: dict[str, str],
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("User-Agent", "incident-bot")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:  # noqa: S310 - http(s) checked
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            body = _json(exc.read())
            message = body.get("message") if isinstance(body, dict) else None
            errors = body.get("errors") if isinstance(body, dict) else None
            text = str(message or exc.reason) + (f" ({'; '.join(map(str, errors))})" if errors else "")
            raise PagerDutyError(exc.code, self._clean(text), _retry_after(exc.headers)) from None
        except (OSError, ValueError) as exc:  # refused, reset, timed out, DNS
            raise PagerDutyError(None, self._clean(f"{type(exc).__name__}: {exc}")) from None

    def _clean(self, text: str) -> str:
        for secret in (self._routing_key, self._api_token):
            if secret is not None:
                text = text.replace(secret.reveal(), "[redacted]")
        return text[:_MESSAGE_CHARS]


def signed(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """Whether any `v1=` signature in the header is the HMAC-SHA256 of `body` under any secret.

    Every pair is compared, in constant time, so timing says nothing about which one was close.
    """
    if not header or not secrets:
        return False
    offered = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets if s]
    results = [hmac.compare_digest(o.encode(), e.encode()) for o in offered for e in expected]
    return any(results)


def signature(body: bytes, secret: str) -> str:
    """The `v1=` signature PagerDuty sends (the sandbox signs its webhooks with it)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def from_config(
    config: PagerDutyConfig | None,
    env: Mapping[str, str],
    events_url: str | None = None,
    api_url: str | None = None,
) -> PagerDutyClient | None:
    """The client the config asks for, or None (no `pagerduty:` section, or no routing key set)."""
    if config is None:
        return None
    key = env.get(config.routing_key_env, "").strip()
    if not key:
        log.warning("pagerduty is configured but %s is unset: nothing is sent to PagerDuty", config.routing_key_env)
        return None
    token = env.get(config.api_token_env) if config.api_token_env else None
    return PagerDutyClient(key, events_url or EVENTS_URL, api_token=token, api_url=api_url or API_URL)


def webhook_secrets(config: PagerDutyConfig | None, env: Mapping[str, str]) -> list[str]:
    """The signing secrets webhooks are checked against: one, or several comma-separated while
    a subscription's secret is being rotated."""
    if config is None:
        return []
    return [s.strip() for s in env.get(config.webhook_secret_env, "").split(",") if s.strip()]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")[:_MESSAGE_CHARS]


def _short(body: Any) -> str:
    return json.dumps(body)[:_MESSAGE_CHARS] if not isinstance(body, str) else body[:_MESSAGE_CHARS]


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
