"""A thin client for the Atlassian Statuspage REST API v1: open, update and resolve incidents.

Only what the bot needs, spoken the way developer.statuspage.io documents it:

    POST  {api_url}pages/{page_id}/incidents                 {"incident": {name, status, body, ...}}
    PATCH {api_url}pages/{page_id}/incidents/{incident_id}   {"incident": {status, body, ...}}

authenticated with `Authorization: OAuth <api key>`. Every failure (an HTTP error, an answer
that is not what the API promises, a network error or timeout) raises `StatuspageError`, whose
`status_code` tells a caller whether to retry later (5xx, 429, network) or not (other 4xx).

The API key is kept out of everything printable: `repr`, error messages and log lines.

    client = from_config(config.statuspage, os.environ)
    if client:
        incident_id = client.create_incident("Checkout errors", "investigating", "Looking.",
                                             severity="P1")
        client.update_incident(incident_id, "identified", "Bad deploy, rolling back.")
        client.resolve_incident(incident_id, "Rolled back; error rate is normal.")
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

from bot.domain.policy import StatuspageConfig

log = logging.getLogger(__name__)

STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")
# Our severities as Statuspage's `impact_override`.
SEVERITY_IMPACT = {"P1": "critical", "P2": "major", "P3": "minor", "P4": "none"}
DEFAULT_TIMEOUT_S = 5.0
# What the public page says when nobody asked for the incident's own words to go public: a title
# typed in a hurry ("DB creds leaked in logs") is written for colleagues, not customers.
GENERIC_NAME = "Investigating an issue"
GENERIC_BODY = "We are investigating an issue and will post updates here."
GENERIC_RESOLVED = "This incident has been resolved."
_MESSAGE_CHARS = 300
_REDACTED = "[redacted]"


class StatuspageError(Exception):
    """A Statuspage call failed.

    `status_code` is the HTTP status, or None when no answer came (network error, timeout).
    `retry_after` is the server's `Retry-After` in seconds, when it sent one (429).
    """

    def __init__(self, status_code: int | None, message: str, retry_after: float | None = None) -> None:
        prefix = f"HTTP {status_code}" if status_code is not None else "no answer"
        super().__init__(f"Statuspage: {prefix}: {message}")
        self.status_code = status_code
        self.message = message
        self.retry_after = retry_after

    @property
    def is_client_error(self) -> bool:
        """4xx: the request itself is wrong (bad key, unknown page or incident, invalid field)."""
        return self.status_code is not None and 400 <= self.status_code < 500

    @property
    def is_server_error(self) -> bool:
        return self.status_code is not None and self.status_code >= 500

    @property
    def is_rate_limited(self) -> bool:
        # Statuspage answered 420 before it switched to 429; both mean "slow down".
        return self.status_code in (420, 429)

    @property
    def retryable(self) -> bool:
        """Whether the same call may succeed later: 5xx, rate limits and network failures."""
        return self.status_code is None or self.is_server_error or self.is_rate_limited


class _Secret:
    """Holds the API key so that printing the client (or its `vars`) never shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return _REDACTED

    __str__ = __repr__


class StatuspageClient:
    """Statuspage REST API v1 for one page."""

    def __init__(self, api_url: str, page_id: str, api_key: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        if urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).netloc:
            raise ValueError(f"Statuspage api_url must be an http(s) URL, got {api_url!r}")
        if not page_id or not page_id.strip():
            raise ValueError("Statuspage page_id is empty")
        api_key = api_key.strip()
        # A key with spaces or control characters would make http.client raise an error that
        # quotes the whole header, key included: refuse it here without showing it.
        if not api_key or not api_key.isprintable() or any(c.isspace() for c in api_key):
            raise ValueError("Statuspage API key is empty or contains whitespace/control characters")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.api_url = api_url if api_url.endswith("/") else api_url + "/"
        self.page_id = page_id.strip()
        self.timeout = float(timeout)
        self._key = _Secret(api_key)

    def __repr__(self) -> str:
        return (
            f"StatuspageClient(api_url={self.api_url!r}, page_id={self.page_id!r}, "
            f"api_key={_REDACTED!r}, timeout={self.timeout!r})"
        )

    # -- the API ---------------------------------------------------------------------------

    def create_incident(
        self,
        name: str,
        status: str,
        body: str,
        *,
        severity: str | None = None,
        deliver_notifications: bool | None = None,
    ) -> str:
        """Open an incident on the page; returns its Statuspage id.

        `severity` (P1-P4) becomes `impact_override`; `deliver_notifications` is sent only when
        given (Statuspage notifies subscribers by default).
        """
        if not name or not name.strip():
            raise ValueError("a Statuspage incident needs a name")
        incident: dict[str, Any] = {"name": name, "status": _check_status(status), "body": body}
        if severity is not None:
            incident["impact_override"] = impact_for(severity)
        if deliver_notifications is not None:
            incident["deliver_notifications"] = bool(deliver_notifications)
        status_code, answer = self._call("POST", self._incidents_path(), {"incident": incident})
        incident_id = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(incident_id, str) or not incident_id:
            raise StatuspageError(status_code, "the answer to create_incident has no incident id")
        log.info("statuspage: opened incident %s (%s)", incident_id, status)
        return incident_id

    def update_incident(
        self,
        incident_id: str,
        status: str,
        body: str,
        *,
        severity: str | None = None,
        deliver_notifications: bool | None = None,
    ) -> None:
        """Post an update (new status and message) to an existing incident."""
        incident: dict[str, Any] = {"status": _check_status(status), "body": body}
        if severity is not None:
            incident["impact_override"] = impact_for(severity)
        if deliver_notifications is not None:
            incident["deliver_notifications"] = bool(deliver_notifications)
        self._call("PATCH", self._incident_path(incident_id), {"incident": incident})
        log.info("statuspage: updated incident %s (%s)", self._scrub(incident_id), status)

    def resolve_incident(self, incident_id: str, body: str, *, deliver_notifications: bool | None = None) -> None:
        """Mark the incident resolved with a closing message."""
        self.update_incident(incident_id, "resolved", body, deliver_notifications=deliver_notifications)

    # -- HTTP ------------------------------------------------------------------------------

    def _incidents_path(self) -> str:
        return f"pages/{quote(self.page_id, safe='')}/incidents"

    def _incident_path(self, incident_id: str) -> str:
        if not incident_id or not incident_id.strip():
            raise ValueError("incident_id is empty")
        return f"{self._incidents_path()}/{quote(incident_id.strip(), safe='')}"

    def _call(self, method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
        """Send `payload` as JSON; returns the HTTP status and the decoded JSON answer."""
        request = urllib.request.Request(
            self.api_url + path,
            data=json.dumps(payload).encode("utf-8"),
            method=method,
            headers={
                "Authorization": f"OAuth {self._key.reveal()}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "incident-bot/statuspage",
            },
        )
        what = self._scrub(f"{method} {path}")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            raw = _read_quietly(error)
            retry_after = _retry_after(error.headers.get("Retry-After"))
            message = self._scrub(f"{what}: {_error_text(raw) or error.reason}")
            log.warning(
                "statuspage: %s answered %s%s",
                what,
                error.code,
                f" (retry after {retry_after:g}s)" if retry_after is not None else "",
            )
            raise StatuspageError(error.code, message, retry_after) from None
        except TimeoutError as error:
            log.warning("statuspage: %s timed out after %gs", what, self.timeout)
            raise StatuspageError(None, f"{what}: timed out after {self.timeout:g}s") from error
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, TimeoutError):
                log.warning("statuspage: %s timed out after %gs", what, self.timeout)
                message = f"{what}: timed out after {self.timeout:g}s"
            else:
                log.warning("statuspage: %s failed: %s", what, self._scrub(str(reason)))
                message = self._scrub(f"{what}: cannot reach Statuspage ({reason})")
            raise StatuspageError(None, message) from None
        except OSError as error:  # connection reset mid-answer and the like
            log.warning("statuspage: %s failed: %s", what, type(error).__name__)
            raise StatuspageError(None, self._scrub(f"{what}: connection failed ({error})")) from None
        log.debug("statuspage: %s -> %s in %.0f ms", what, status, (time.perf_counter() - started) * 1000)
        try:
            return status, (json.loads(raw) if raw else None)
        except ValueError:
            raise StatuspageError(status, f"{what}: the answer is not JSON") from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._key.reveal(), _REDACTED)


def impact_for(severity: str) -> str:
    """Our severity (P1-P4, any case) as Statuspage's `impact_override`."""
    try:
        return SEVERITY_IMPACT[severity.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown severity {severity!r} (expected P1, P2, P3 or P4)") from None


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise ValueError(f"unknown Statuspage status {status!r} (expected one of {STATUSES})")
    return status


def _read_quietly(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read(64 * 1024)
    except OSError:
        return b""


def _error_text(raw: bytes) -> str:
    """The message of a Statuspage error answer (`{"error": ...}` or `{"message": ...}`)."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:_MESSAGE_CHARS]
    if isinstance(data, dict):
        for key in ("error", "message", "errors"):
            value = data.get(key)
            if isinstance(value, list):
                value = "; ".join(map(str, value))
            if value:
                return str(value)[:_MESSAGE_CHARS]
    return text[:_MESSAGE_CHARS]


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def unavailable_reason(config: StatuspageConfig | None, env: Mapping[str, str] | None = None) -> str | None:
    """Why no Statuspage client can be built from `config` and `env`, or None if one can."""
    if config is None:
        return "no `statuspage:` block in the config"
    env = os.environ if env is None else env
    if not config.page_id:
        return "statuspage.page_id is empty"
    if not config.api_key_env:
        return "statuspage.api_key_env is empty"
    key = env.get(config.api_key_env, "")
    if not key.strip():
        return f"the environment variable {config.api_key_env} (statuspage.api_key_env) is not set or empty"
    if not key.strip().isprintable() or any(c.isspace() for c in key.strip()):
        return f"the environment variable {config.api_key_env} contains whitespace"
    parts = urlsplit(config.api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"statuspage.api_url {config.api_url!r} is not an http(s) URL"
    return None


def from_config(
    config: StatuspageConfig | None,
    env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> StatuspageClient | None:
    """The client for `config`, with the key read from `env[config.api_key_env]`.

    None (and a warning saying why) when Statuspage is configured but cannot be used, e.g. the
    key's environment variable is missing; None silently when there is no `statuspage:` block.
    """
    reason = unavailable_reason(config, env)
    if reason is not None:
        if config is not None:
            log.warning("statuspage: updates disabled: %s", reason)
        return None
    assert config is not None
    env = os.environ if env is None else env
    return StatuspageClient(config.api_url, config.page_id, env[config.api_key_env], timeout=timeout)
