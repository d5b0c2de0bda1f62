"""A local Atlassian Statuspage REST API v1: the incident endpoints the bot calls.

    POST  /v1/pages/{page_id}/incidents                 create -> 201 + the incident
    PATCH /v1/pages/{page_id}/incidents/{incident_id}   update -> 200 + the incident
    GET   /v1/pages/{page_id}/incidents/{incident_id}   get    -> 200 + the incident

(the `/v1` prefix and a `.json` suffix are optional, as on api.statuspage.io). Incidents have
the API's shape: id, page_id, name, status, impact, created_at, updated_at, monitoring_at,
resolved_at, shortlink and `incident_updates` (newest first, each with id, incident_id, status,
body, created_at, updated_at, display_at, deliver_notifications).

Like the real API it wants `Authorization: OAuth <key>` (401 otherwise), answers 404 for a page
or incident it does not know and 422 for an invalid status or impact, with `{"error": ...}`.
Every request is recorded in `requests` with its headers (the key replaced by `[redacted]`) and
the moment it arrived; `most_at_once` is the largest number of requests it was serving at one
time, which is how a test sees whether a client sends calls one after another.
Faults: `fail(times, status)`, `rate_limit(times, retry_after)`, `delay(seconds)`, `hang()`.
Like the real API it allows each key 60 requests in any 60 seconds (`per_minute`), then 429.

    with StatuspageSandbox(page_id="page1", api_key="sk-test") as sp:
        client = StatuspageClient(sp.api_url, "page1", "sk-test")
        incident_id = client.create_incident("Checkout errors", "investigating", "Looking.")
        assert sp.incidents[incident_id]["status"] == "investigating"
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.health import ALL, NOT_JSON, JsonServer, Request, read_request

STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")
REDACTED = "[redacted]"
RATE_LIMIT_PER_MINUTE = 60  # "1 request / second as measured on a 60 second rolling window"
_ID_CHARS = string.ascii_lowercase + string.digits
_PREFIX = r"(?:/v1)?/pages/(?P<page>[^/]+)/incidents"
_ROUTES = (
    ("POST", re.compile(_PREFIX + r"(?:\.json)?\Z"), "create_incident"),
    ("PATCH", re.compile(_PREFIX + r"/(?P<incident>[^/.]+)(?:\.json)?\Z"), "update_incident"),
    ("GET", re.compile(_PREFIX + r"/(?P<incident>[^/.]+)(?:\.json)?\Z"), "get_incident"),
)


@dataclass(frozen=True)
class StatuspageRequest(Request):
    """One request as the emulator saw it; `headers` never hold the key."""

    headers: dict[str, str] = field(default_factory=dict)
    authorized: bool = False
    at: float = 0.0  # time.monotonic() when it arrived


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _CountedFault:
    times: int
    status: int
    endpoint: str = ALL
    retry_after: int | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _new_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(12))


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, {"error": message}, headers or {})


class StatuspageSandbox(JsonServer):
    """Statuspage for one page (more via `add_page`), on 127.0.0.1 at a free port."""

    def __init__(
        self,
        page_id: str = "sandboxpage",
        api_key: str = "sandbox-statuspage-key",
        per_minute: int | None = RATE_LIMIT_PER_MINUTE,
    ):
        super().__init__()
        self.page_id = page_id
        self.api_key = api_key
        self.per_minute = per_minute
        self._recent: list[float] = []  # arrival times of this key's requests in the last minute
        self.pages: set[str] = {page_id}
        # id -> the incident's JSON as the API returns it
        self.incidents: dict[str, dict[str, Any]] = {}
        self._counted: list[_CountedFault] = []
        self._data_lock = threading.Lock()
        self._serving = 0
        self.most_at_once = 0

    # -- setup and assertions --------------------------------------------------------------

    @property
    def api_url(self) -> str:
        """The base URL a client uses, like `https://api.statuspage.io/v1/`."""
        return f"{self.url}/v1/"

    def add_page(self, page_id: str) -> None:
        self.pages.add(page_id)

    def incident(self, incident_id: str) -> dict[str, Any]:
        with self._data_lock:
            return copy.deepcopy(self.incidents[incident_id])

    @property
    def calls(self) -> list[StatuspageRequest]:
        """Every request so far (`requests`, typed with headers), oldest first."""
        with self._lock:
            return [r for r in self.requests if isinstance(r, StatuspageRequest)]

    def calls_to(self, endpoint: str) -> list[StatuspageRequest]:
        """The requests routed to `endpoint` (create_incident, update_incident, get_incident)."""
        return [r for r in self.calls if r.endpoint == endpoint]

    # -- faults ----------------------------------------------------------------------------

    # `times` first, unlike JsonServer.fail: a Statuspage outage is usually a few bad answers.
    def fail(self, times: int = 1, status: int = 500, endpoint: str = ALL) -> None:  # type: ignore[override]
        """Answer the next `times` requests for `endpoint` (default: any) with HTTP `status`."""
        with self._lock:
            self._counted.append(_CountedFault(times, status, endpoint))

    def rate_limit(self, times: int = 1, retry_after: int = 60, endpoint: str = ALL) -> None:
        """Answer the next `times` requests with 429 and `Retry-After: retry_after`."""
        with self._lock:
            self._counted.append(_CountedFault(times, 429, endpoint, retry_after))

    def heal(self) -> None:
        with self._lock:
            self._counted.clear()
        super().heal()

    # -- serving ---------------------------------------------------------------------------

    def _serve(self, http: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self._serving += 1
            self.most_at_once = max(self.most_at_once, self._serving)
        done = threading.Event()

        def answer(answer: _Answer) -> None:
            # Counted as served before the answer leaves: a client's next call cannot overlap it.
            self._served(done)
            self._answer(http, answer)

        try:
            self._serve_one(http, method, answer)
        finally:
            self._served(done)

    def _served(self, done: threading.Event) -> None:
        with self._lock:
            if not done.is_set():
                done.set()
                self._serving -= 1

    def _serve_one(self, http: BaseHTTPRequestHandler, method: str, answer: Callable[[_Answer], None]) -> None:
        parts, raw, body = read_request(http)
        if body is NOT_JSON:
            body = raw.decode("utf-8", "replace")
        authorization = http.headers.get("Authorization", "")
        authorized = authorization == f"OAuth {self.api_key}"
        headers = {
            name: (_redact_authorization(value) if name.lower() == "authorization" else value)
            for name, value in http.headers.items()
        }
        endpoint, match = "unknown", None
        for route_method, pattern, route_endpoint in _ROUTES:
            found = pattern.match(parts.path)
            if found and route_method == method:
                endpoint, match = route_endpoint, found
                break
        request = StatuspageRequest(
            method,
            parts.path,
            parse_qs(parts.query),
            body,
            endpoint,
            headers=headers,
            authorized=authorized,
            at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
            fault = self._faults.for_endpoint(endpoint)
            delay_s, hang = fault.delay_s, fault.hang
            counted = self._take_counted(endpoint)
            if counted is None and authorized:
                counted = self._over_the_limit(request.at)
        if delay_s:
            time.sleep(delay_s)
        if hang:
            self._release.wait()
            return  # the client gave up long ago; close without an answer
        if counted is not None:
            extra = {"Retry-After": str(counted.retry_after)} if counted.retry_after else {}
            message = "rate limit exceeded" if counted.status in (420, 429) else "injected failure"
            answer(_error(counted.status, message, extra))
            return
        if match is None:
            answer(_error(404, f"no route for {method} {parts.path}"))
            return
        if not authorized:
            answer(_error(401, "Could not authenticate"))
            return
        try:
            result = self._handle(endpoint, match, body)
        except Exception as exc:  # an emulator bug should look like a server error, not a hang
            result = _error(500, f"emulator error: {type(exc).__name__}: {exc}")
        answer(result)

    def _over_the_limit(self, now: float) -> _CountedFault | None:
        """The documented limit: each API token gets 1 request a second, measured on a rolling
        60-second window; a request past it is refused with 429 and when to come back."""
        if self.per_minute is None:
            return None
        self._recent = [t for t in self._recent if now - t < 60.0]
        if len(self._recent) >= self.per_minute:
            wait = max(1, int(60.0 - (now - self._recent[0])) + 1)
            return _CountedFault(1, 429, ALL, wait)
        self._recent.append(now)
        return None

    def _take_counted(self, endpoint: str) -> _CountedFault | None:
        self._counted = [f for f in self._counted if f.times > 0]
        for fault in self._counted:
            if fault.endpoint in (ALL, endpoint):
                fault.times -= 1
                return fault
        return None

    def _handle(self, endpoint: str, match: re.Match[str], body: Any) -> _Answer:
        page = match["page"]
        if page not in self.pages:
            return _error(404, f"page {page!r} not found")
        if endpoint == "get_incident":
            with self._data_lock:
                found = self.incidents.get(match["incident"])
                if found is None or found["page_id"] != page:
                    return _error(404, "incident not found")
                return _Answer(200, copy.deepcopy(found))
        if not isinstance(body, dict) or not isinstance(body.get("incident"), dict):
            return _error(400, "param is missing or the value is empty: incident")
        fields = body["incident"]
        if endpoint == "create_incident":
            return self._create(page, fields)
        return self._update(page, match["incident"], fields)

    def _create(self, page: str, fields: dict[str, Any]) -> _Answer:
        name = fields.get("name")
        if not isinstance(name, str) or not name.strip():
            return _error(422, "Name can't be blank")
        status = fields.get("status", "investigating")
        problem = _validate(fields, status)
        if problem:
            return _error(422, problem)
        now = _now()
        incident_id = _new_id()
        incident = {
            "id": incident_id,
            "page_id": page,
            "name": name,
            "status": status,
            "impact": fields.get("impact_override") or "none",
            "impact_override": fields.get("impact_override"),
            "created_at": now,
            "updated_at": now,
            "started_at": now,
            "monitoring_at": now if status == "monitoring" else None,
            "resolved_at": now if status == "resolved" else None,
            "shortlink": f"https://stspg.io/{incident_id[:9]}",
            "incident_updates": [],
        }
        incident["incident_updates"].insert(0, _update_entry(incident_id, status, fields, now))
        with self._data_lock:
            self.incidents[incident_id] = incident
            return _Answer(201, copy.deepcopy(incident))

    def _update(self, page: str, incident_id: str, fields: dict[str, Any]) -> _Answer:
        with self._data_lock:
            incident = self.incidents.get(incident_id)
            if incident is None or incident["page_id"] != page:
                return _error(404, f"incident {incident_id!r} not found")
            status = fields.get("status", incident["status"])
            problem = _validate(fields, status)
            if problem:
                return _error(422, problem)
            now = _now()
            if "name" in fields:
                incident["name"] = fields["name"]
            if fields.get("impact_override"):
                incident["impact"] = incident["impact_override"] = fields["impact_override"]
            if status == "monitoring" and incident["status"] != "monitoring":
                incident["monitoring_at"] = now
            if status == "resolved" and incident["status"] != "resolved":
                incident["resolved_at"] = now
            if "status" in fields or "body" in fields:
                entry = _update_entry(incident_id, status, fields, now)
                incident["incident_updates"].insert(0, entry)
            incident["status"] = status
            incident["updated_at"] = now
            return _Answer(200, copy.deepcopy(incident))

    @staticmethod
    def _answer(http: BaseHTTPRequestHandler, answer: _Answer) -> None:
        data = json.dumps(answer.body).encode()
        try:
            http.send_response(answer.status)
            http.send_header("Content-Type", "application/json; charset=utf-8")
            http.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left


def _validate(fields: dict[str, Any], status: Any) -> str | None:
    if status not in STATUSES:
        return f"Status is not included in the list ({', '.join(STATUSES)})"
    impact = fields.get("impact_override")
    if impact is not None and impact not in IMPACTS:
        return f"Impact override is not included in the list ({', '.join(IMPACTS)})"
    if "body" in fields and not isinstance(fields["body"], str):
        return "Body must be a string"
    return None


def _update_entry(incident_id: str, status: str, fields: dict[str, Any], now: str) -> dict:
    return {
        "id": _new_id(),
        "incident_id": incident_id,
        "status": status,
        "body": fields.get("body") or "",
        "created_at": now,
        "updated_at": now,
        "display_at": now,
        "affected_components": None,
        "deliver_notifications": bool(fields.get("deliver_notifications", True)),
    }


def _redact_authorization(value: str) -> str:
    scheme, _, credentials = value.partition(" ")
    return f"{scheme} {REDACTED}" if credentials else REDACTED
