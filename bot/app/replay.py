"""Refusing a replayed Slack request: the same signed request sent again.

Bolt accepts a request whose signature is valid and whose timestamp is less than 5 minutes old.
Within those 5 minutes a captured request could be sent again as it is. Slack signs every
delivery anew, retries included (each carries its own `X-Slack-Request-Timestamp`), so a
timestamp and signature seen before is a replay and is refused, after Bolt's own check has
shown the signature to be real (a forged one is never remembered).

The memory is per process: on several instances a replay sent to another one is not caught.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse

WINDOW_S = 5 * 60 + 30  # Bolt's 5 minutes, and some clock skew


class ReplayGuard:
    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, float] = OrderedDict()  # oldest first

    def first_time(self, timestamp: str, signature: str) -> bool:
        """True the first time this signed request is seen within the window."""
        now = self._clock()
        key = f"{timestamp}:{signature}"
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - self.window_s:
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


def middleware(guard: ReplayGuard) -> Callable[..., BoltResponse]:
    """A Bolt middleware (after Bolt's signature check) that answers a replay with 401."""

    def refuse_replays(req: BoltRequest, resp: BoltResponse, next: Callable[[], Any]) -> Any:  # noqa: A002
        signature = _header(req, "x-slack-signature")
        timestamp = _header(req, "x-slack-request-timestamp")
        if req.mode == "http" and signature and not guard.first_time(timestamp, signature):
            return BoltResponse(status=401, body={"error": "replayed request"})
        return next()

    return refuse_replays


def _header(req: BoltRequest, name: str) -> str:
    values = req.headers.get(name) or []
    return str(values[0]) if values else ""
