"""A dead man's switch monitor (healthchecks.io, a PagerDuty heartbeat, an uptime check's target):
`GET /ping/<name>` answers 200 "OK" and is recorded with the time it arrived, so tests can see
when pings arrive and when they stop. Faults (`fail`, `delay`, `hang`) come from `JsonServer`."""

from __future__ import annotations

import re
import threading
import time

from bot.sandbox.health import JsonServer, Request, Response


class HeartbeatServer(JsonServer):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.pings: list[float] = []  # time.time() of each ping received, oldest first
        self.route("GET", r"/ping/[A-Za-z0-9_.-]+", "ping", self._ping)

    def ping_url(self, name: str = "incident-bot") -> str:
        return f"{self.url}/ping/{name}"

    def pings_since(self, since: float) -> list[float]:
        with self._lock:
            return [t for t in self.pings if t >= since]

    def _ping(self, req: Request, match: re.Match[str]) -> Response:
        with self._lock:
            self.pings.append(time.time())
        return Response(200, "OK")
