"""A local PagerDuty: the Events API v2 the bot sends to, and the v3 webhooks it sends back.

    POST /v2/enqueue      an alert event -> 202 {"status": "success", "message": "Event processed",
                          "dedup_key": ...}; 400 {"status": "invalid event", "message": "Event object
                          is invalid", "errors": [...]}; 429 over the rate limit
    GET  /users/{id}      REST API v2 (`Authorization: Token token=<token>`) -> {"user": {...}}

It is as strict as PagerDuty documents (developer.pagerduty.com, "Send an Alert Event"): a known
`routing_key`, `event_action` one of trigger/acknowledge/resolve, a `dedup_key` of at most 255
characters (required for acknowledge and resolve), and for a trigger a `payload` with `summary`
(at most 1024 characters), `source` and `severity` (critical, error, warning or info), an ISO 8601
`timestamp`, an object for `custom_details`, `links` with an `href` and `images` with an https
`src`; a body over 512 KB is refused. About 120 events a minute per integration key are taken
(`per_minute`, a rolling 60-second window); more get 429.

Events build alerts by dedup_key as PagerDuty does: a trigger opens one (or adds to the open one),
acknowledge and resolve act on the open one and are dropped when there is none; a trigger after
a resolve opens a new one. `acknowledge(key, user)` and `resolve(key, user)` act as a responder
would in PagerDuty's app, and send the signed v3 webhook (`incident.acknowledged`,
`incident.resolved`) to every subscription (`subscribe(url, secrets, events)`) that asked for that
event type, signed with each of its secrets (several while one is rotated). As in PagerDuty, a
change an event makes (a trigger opening an alert, an acknowledge or resolve sent through the
Events API) is announced too, with the integration as the agent: the bot hears its own
acknowledges and resolves come back, asynchronously (a webhook may reach the bot before the 202). Faults: `fail(times, status)`, `down()` (every request
refused with 503 until `heal()`), `delay`, `hang`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.pagerduty.client import signature
from bot.sandbox.health import ALL, NOT_JSON, JsonServer, Request, read_request

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
MAX_BODY = 512 * 1024
RATE_LIMIT_PER_MINUTE = 120
# PagerDuty expects a 2xx within 5 seconds for a generic webhook (developer.pagerduty.com,
# Webhooks "Behavior"); a slower answer is a failed delivery.
WEBHOOK_TIMEOUT_S = 5.0
ROUTING_KEY = "R0SANDBOXROUTINGKEY0000000000000"  # 32 characters, like an integration key
API_TOKEN = "sandbox-pagerduty-api-token"
_ISO = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?\Z")


@dataclass(frozen=True)
class EventRequest(Request):
    """One request as the emulator saw it, with its status and when it came."""

    status: int = 0
    at: float = 0.0


@dataclass
class Alert:
    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    summary: str
    severity: str
    source: str
    number: int
    events: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    acknowledged_by: str | None = None


# The event types the README tells a subscription to ask for.
SUBSCRIBED = ("incident.acknowledged", "incident.resolved")
INTEGRATION_ID = "PSANDBOXEV2"


@dataclass
class Subscription:
    url: str
    secrets: tuple[str, ...]
    events: tuple[str, ...] = SUBSCRIBED
    deliveries: list[tuple[int | None, dict[str, Any]]] = field(default_factory=list)  # (status, payload)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str


class PagerDutySandbox(JsonServer):
    """PagerDuty's Events API v2 for the given integration keys, its REST users, its webhooks."""

    def __init__(
        self,
        routing_keys: tuple[str, ...] = (ROUTING_KEY,),
        api_token: str = API_TOKEN,
        per_minute: int | None = RATE_LIMIT_PER_MINUTE,
        window_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.routing_keys = set(routing_keys)
        self.api_token = api_token
        self.per_minute = per_minute  # events taken per key within `window_s` (a minute, as documented)
        self.window_s = window_s
        self._recent: dict[str, list[float]] = {}
        self.alerts: list[Alert] = []  # every alert ever opened, oldest first
        self.users: dict[str, User] = {}
        self.subscriptions: list[Subscription] = []
        self._counted: list[list[int]] = []  # [times, status]
        self._down = False
        self._data = threading.Lock()

    def __enter__(self) -> PagerDutySandbox:
        self.start()
        return self

    # -- setup and assertions --------------------------------------------------------------

    @property
    def events_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    @property
    def api_url(self) -> str:
        return self.url

    def add_user(self, user_id: str, name: str, email: str) -> User:
        user = User(user_id, name, email)
        self.users[user_id] = user
        return user

    def subscribe(self, url: str, secrets: tuple[str, ...], events: tuple[str, ...] = SUBSCRIBED) -> Subscription:
        """A v3 webhook subscription: every incident event of those types is POSTed to `url`, signed."""
        subscription = Subscription(url, tuple(secrets), tuple(events))
        self.subscriptions.append(subscription)
        return subscription

    @property
    def calls(self) -> list[EventRequest]:
        with self._lock:
            return [r for r in self.requests if isinstance(r, EventRequest) and r.endpoint == "enqueue"]

    def accepted(self, action: str | None = None) -> list[dict[str, Any]]:
        """The events answered 202, oldest first (optionally of one `event_action`)."""
        return [
            c.body for c in self.calls if c.status == 202 and (action is None or c.body.get("event_action") == action)
        ]

    def alert(self, dedup_key: str) -> Alert | None:
        """The newest alert of that key."""
        with self._data:
            found = [a for a in self.alerts if a.dedup_key == dedup_key]
            return copy.deepcopy(found[-1]) if found else None

    # -- faults ----------------------------------------------------------------------------

    def fail(self, times: int = 1, status: int = 500, endpoint: str = ALL) -> None:  # type: ignore[override]
        """Answer the next `times` events with HTTP `status` (a 429 like the rate limit's)."""
        with self._lock:
            self._counted.append([times, status])

    def down(self) -> None:
        """Refuse every request with 503 until `heal()`."""
        with self._lock:
            self._down = True

    def heal(self) -> None:
        with self._lock:
            self._counted.clear()
            self._down = False
        super().heal()

    # -- a responder in PagerDuty's app ----------------------------------------------------

    def acknowledge(self, dedup_key: str, user_id: str) -> list[int | None]:
        """The responder acknowledges the open alert; returns each subscription's answer."""
        return self._respond(dedup_key, user_id, "acknowledged")

    def resolve(self, dedup_key: str, user_id: str) -> list[int | None]:
        return self._respond(dedup_key, user_id, "resolved")

    def _respond(self, dedup_key: str, user_id: str, status: str) -> list[int | None]:
        with self._data:
            alert = self._open(dedup_key)
            if alert is None:
                raise KeyError(f"no open alert for {dedup_key!r}")
            alert.status = status
            if status == "acknowledged":
                alert.acknowledged_by = user_id
            payload = self.webhook_payload(alert, f"incident.{status}", user_id)
        return [self.deliver(s, payload) for s in self.subscriptions if payload["event"]["event_type"] in s.events]

    def webhook_payload(self, alert: Alert, event_type: str, user_id: str | None) -> dict[str, Any]:
        """A v3 webhook body, in the shape PagerDuty documents (developer.pagerduty.com, Webhooks v3);
        `user_id` None: the change came through the Events API integration."""
        user = self.users.get(user_id or "")
        agent: dict[str, Any] | None = {
            "html_url": f"https://sandbox.pagerduty.com/services/PSANDBOX/integrations/{INTEGRATION_ID}",
            "id": INTEGRATION_ID,
            "self": f"{self.api_url}/services/PSANDBOX/integrations/{INTEGRATION_ID}",
            "summary": "Events API V2",
            "type": "events_api_v2_inbound_integration_reference",
        }
        if user_id:
            agent = {
                "html_url": f"https://sandbox.pagerduty.com/users/{user_id}",
                "id": user_id,
                "self": f"{self.api_url}/users/{user_id}",
                "summary": user.name if user else user_id,
                "type": "user_reference",
            }
        incident_id = f"Q{alert.number:06d}"
        return {
            "event": {
                "id": uuid.uuid4().hex,
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "agent": agent,
                "client": None,
                "data": {
                    "id": incident_id,
                    "type": "incident",
                    "self": f"{self.api_url}/incidents/{incident_id}",
                    "html_url": f"https://sandbox.pagerduty.com/incidents/{incident_id}",
                    "number": alert.number,
                    "status": alert.status,
                    "incident_key": alert.dedup_key,
                    "created_at": alert.events[0]["at"] if alert.events else None,
                    "title": alert.summary,
                    "service": {"id": "PSANDBOX", "summary": alert.source, "type": "service_reference"},
                    "assignees": [],
                    "urgency": "high" if alert.severity in ("critical", "error") else "low",
                    "resolve_reason": None,
                },
            }
        }

    def deliver(self, subscription: Subscription, payload: dict[str, Any], body: bytes | None = None) -> int | None:
        """POST one webhook, signed with each of the subscription's secrets; the HTTP status, or None
        when the bot did not answer within PagerDuty's 5 seconds (or at all)."""
        raw = body if body is not None else json.dumps(payload).encode()
        request = urllib.request.Request(subscription.url, data=raw, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("User-Agent", "PagerDuty-Webhook/V3.0")
        request.add_header("X-Webhook-Id", uuid.uuid4().hex)
        if subscription.secrets:
            request.add_header("X-PagerDuty-Signature", ",".join(signature(raw, s) for s in subscription.secrets))
        status: int | None
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310 - loopback
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = None
        subscription.deliveries.append((status, payload))
        return status

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler, method: str) -> None:
        answer: dict[str, Any]
        parts, raw, body = read_request(http)
        path = parts.path.rstrip("/")
        endpoint = "enqueue" if path == "/v2/enqueue" and method == "POST" else "unknown"
        user = re.fullmatch(r"/users/([A-Za-z0-9]+)", path)
        if user and method == "GET":
            endpoint = "user"
        now = time.monotonic()
        with self._lock:
            fault = self._faults.for_endpoint(endpoint)
            delay_s, hang, down = fault.delay_s, fault.hang, self._down
            counted = None
            if endpoint == "enqueue" and not down:
                self._counted = [c for c in self._counted if c[0] > 0]
                if self._counted:
                    self._counted[0][0] -= 1
                    counted = self._counted[0][1]
        if delay_s:
            time.sleep(delay_s)
        if hang:
            self._release.wait()
            return
        if down:
            status, answer = 503, {"status": "unavailable", "message": "Service Unavailable"}
        elif counted is not None:
            status, answer = counted, _failure(counted)
        elif endpoint == "enqueue":
            status, answer = self._enqueue(raw, body, now)
        elif endpoint == "user" and user is not None:
            status, answer = self._user(http.headers.get("Authorization", ""), user.group(1))
        else:
            status, answer = 404, {"error": "Not Found"}
        recorded = body if isinstance(body, (dict, list)) else None
        with self._lock:
            self.requests.append(EventRequest(method, path, {}, recorded, endpoint, status=status, at=now))
        self._send_json(http, status, answer)

    def _enqueue(self, raw: bytes, body: Any, now: float) -> tuple[int, dict[str, Any]]:
        if len(raw) > MAX_BODY:
            return 413, {"status": "invalid event", "message": "Request too large"}
        if body is NOT_JSON or not isinstance(body, dict):
            return _invalid(["Event object is not valid JSON"])
        errors = _validate(body, self.routing_keys)
        if errors:
            return _invalid(errors)
        key = body["routing_key"]
        if self._over_the_limit(key, now):
            return 429, _failure(429)
        action = body["event_action"]
        dedup_key = body.get("dedup_key") or uuid.uuid4().hex
        changed: str | None = None  # the v3 event type this event causes, if any
        with self._data:
            alert = self._open(dedup_key)
            if action == "trigger":
                payload = body["payload"]
                if alert is None:
                    alert = Alert(
                        dedup_key,
                        "triggered",
                        payload["summary"],
                        payload["severity"],
                        payload["source"],
                        number=len(self.alerts) + 1,
                    )
                    self.alerts.append(alert)
                    changed = "incident.triggered"
                alert.links = list(body.get("links") or alert.links)
            elif alert is not None:
                status = "acknowledged" if action == "acknowledge" else "resolved"
                changed = f"incident.{status}" if alert.status != status else None
                alert.status = status
            if alert is not None:
                alert.events.append({"action": action, "at": datetime.now(UTC).isoformat()})
            news = self.webhook_payload(alert, changed, None) if alert is not None and changed else None
        if news is not None:
            self._announce(news)
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}

    def _announce(self, payload: dict[str, Any]) -> None:
        """Webhooks for a change an event made, sent on their own threads: PagerDuty's webhooks are
        asynchronous to the event that caused them."""
        kind = payload["event"]["event_type"]
        for subscription in [s for s in self.subscriptions if kind in s.events]:
            threading.Thread(target=self.deliver, args=(subscription, payload), daemon=True).start()

    def _open(self, dedup_key: str) -> Alert | None:
        found = [a for a in self.alerts if a.dedup_key == dedup_key and a.status != "resolved"]
        return found[-1] if found else None

    def _over_the_limit(self, key: str, now: float) -> bool:
        """About 120 events a minute per integration key, counted over the last 60 seconds."""
        if self.per_minute is None:
            return False
        with self._lock:
            recent = self._recent[key] = [t for t in self._recent.get(key, []) if now - t < self.window_s]
            if len(recent) >= self.per_minute:
                return True
            recent.append(now)
            return False

    def _user(self, authorization: str, user_id: str) -> tuple[int, dict[str, Any]]:  # REST API v2
        if authorization != f"Token token={self.api_token}":
            return 401, {"error": {"message": "Unauthorized", "code": 2006}}
        user = self.users.get(user_id)
        if user is None:
            return 404, {"error": {"message": "Not Found", "code": 2100}}
        return 200, {"user": {"id": user.id, "type": "user", "name": user.name, "email": user.email}}

    @staticmethod
    def _send_json(http: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        try:
            http.send_response(status)
            http.send_header("Content-Type", "application/json")
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _invalid(errors: list[str]) -> tuple[int, dict[str, Any]]:
    return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}


def _failure(status: int) -> dict[str, Any]:
    if status == 429:
        return {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
    return {"status": "error", "message": "injected failure"}


def _validate(body: dict[str, Any], routing_keys: set[str]) -> list[str]:
    errors = []
    key = body.get("routing_key")
    if not isinstance(key, str) or not key:
        errors.append("'routing_key' is missing or blank")
    elif key not in routing_keys:
        errors.append("'routing_key' is invalid (no integration has this key)")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append(f"'event_action' is invalid (must be one of {', '.join(ACTIONS)})")
    dedup_key = body.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > DEDUP_KEY_MAX):
        errors.append(f"'dedup_key' must be a string of at most {DEDUP_KEY_MAX} characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append(f"'dedup_key' is required for {action} events")
    if action == "trigger":
        errors += _validate_trigger(body)
    return errors


def _validate_trigger(body: dict[str, Any]) -> list[str]:
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > SUMMARY_MAX:
        errors.append(f"'payload.summary' is longer than {SUMMARY_MAX} characters")
    if not isinstance(payload.get("source"), str) or not payload["source"].strip():
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append(f"'payload.severity' is invalid (must be one of {', '.join(SEVERITIES)})")
    timestamp = payload.get("timestamp")
    if timestamp is not None and (not isinstance(timestamp, str) or not _ISO.match(timestamp)):
        errors.append("'payload.timestamp' is not an ISO 8601 timestamp")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            errors.append(f"'payload.{name}' must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], (dict, str)):
        errors.append("'payload.custom_details' must be an object")
    links = body.get("links", [])
    if not isinstance(links, list) or not all(isinstance(x, dict) and isinstance(x.get("href"), str) for x in links):
        errors.append("'links' must be a list of objects with an 'href'")
    images = body.get("images", [])
    if not isinstance(images, list) or not all(
        isinstance(x, dict) and isinstance(x.get("src"), str) and x["src"].startswith("https://") for x in images
    ):
        errors.append("'images' must be a list of objects with an https 'src'")
    return errors
