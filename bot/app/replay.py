"""Refusing a replayed Slack request: the same signed request sent again.

Bolt accepts a request whose signature is valid and whose timestamp is less than 5 minutes old.
Within those 5 minutes a captured request could be sent again as it is. Slack signs every
delivery anew, retries included (each carries its own `X-Slack-Request-Timestamp`), so a
timestamp and signature seen before is a replay and is refused, after Bolt's own check has
shown the signature to be real (a forged one is never remembered).

Events API deliveries are different: Slack sends an event again (a retry, with a new timestamp
and `X-Slack-Retry-Num`, or the same delivery twice) when it thinks the first went unanswered,
and counts anything but a 2xx as a failed delivery (above 5% in an hour it disables the app's
event subscriptions). So an event is recognised by its `event_id` and a copy is answered 200
with no effect, logged once; only commands and interactions seen before get 401.

The memory is per process, and on PostgreSQL also in the store (`remember`, shared by every
instance), so a replay sent to another instance is refused as well. If the store cannot be
reached the process's own memory still answers (a request is not refused for an outage).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse

WINDOW_S = 5 * 60 + 30  # Bolt's 5 minutes, and some clock skew
# Slack retries an event up to three times, the last about 5 minutes after the first.
EVENT_WINDOW_S = 60 * 60

log = logging.getLogger(__name__)


class ReplayGuard:
    def __init__(
        self,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        remember: Callable[[str, float], bool] | None = None,
    ) -> None:
        self.window_s = window_s
        self._clock = clock
        self._remember = remember  # the instances' shared memory (PostgreSQL), or None
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # oldest first
        self._events: OrderedDict[str, float] = OrderedDict()  # event_id -> first seen, oldest first
        self._copies_logged: set[str] = set()

    def first_time(self, timestamp: str, signature: str) -> bool:
        """True the first time this signed request is seen within the window."""
        return self._first(self._seen, f"{timestamp}:{signature}", self.window_s)

    def first_event(self, event_id: str) -> bool:
        """True the first time this Events API `event_id` is seen within the hour."""
        return self._first(self._events, event_id, EVENT_WINDOW_S)

    def log_copy_once(self, event_id: str, retry_num: str) -> None:
        with self._lock:
            if event_id in self._copies_logged:
                return
            if len(self._copies_logged) > 10_000:
                self._copies_logged.clear()
            self._copies_logged.add(event_id)
        log.info("event %s seen before (retry %s): answered 200, not handled again", event_id, retry_num or "none")

    def _first(self, seen: OrderedDict[str, float], key: str, window_s: float) -> bool:
        now = self._clock()
        with self._lock:
            while seen and next(iter(seen.values())) < now - window_s:
                seen.popitem(last=False)
            if key in seen:
                return False
            seen[key] = now
        if self._remember is None:
            return True
        try:
            return self._remember(key, window_s)
        except Exception:  # noqa: BLE001 - an outage must not refuse every request
            log.warning("could not check the shared replay memory; this process's own answered", exc_info=True)
            return True


def middleware(guard: ReplayGuard) -> Callable[..., BoltResponse]:
    """A Bolt middleware (after Bolt's signature check) that answers a replay with 401."""

    def refuse_replays(req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:  # noqa: A002
        event_id = _event_id(req)
        if event_id:
            if guard.first_event(event_id):
                return next()
            guard.log_copy_once(event_id, _header(req, "x-slack-retry-num"))
            return BoltResponse(status=200, body="")
        signature = _header(req, "x-slack-signature")
        timestamp = _header(req, "x-slack-request-timestamp")
        if req.mode == "http" and signature and not guard.first_time(timestamp, signature):
            return BoltResponse(status=401, body={"error": "replayed request"})
        return next()

    return refuse_replays


def _header(req: BoltRequest, name: str) -> str:
    values = req.headers.get(name) or []
    return str(values[0]) if values else ""


def _event_id(req: BoltRequest) -> str:
    body = req.body if isinstance(req.body, dict) else {}
    if body.get("type") != "event_callback":
        return ""
    event_id = body.get("event_id")
    return event_id if isinstance(event_id, str) else ""
