"""Fault injection: failures, 429s, `ok: false` errors, delays and held answers set up by a
test (`fail`, `rate_limit`, `error`, `delay`, `hold_response`), seeded chaos, and how a fault
is answered on the wire.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack.core import SandboxCore
from bot.sandbox.slack.workspace import Call


@dataclass
class _Fault:
    kind: str  # "fail" | "rate_limit" | "error" | "delay"
    remaining: int | None  # None: until cleared
    status: int = 500
    error: str = "internal_error"
    retry_after: int = 1
    seconds: float = 0.0
    body: str | None = None


@dataclass
class _Chaos:
    rng: random.Random
    rate: float
    stall_s: float
    retry_after: int


class Faults(SandboxCore):
    """What a test sets up to go wrong, consumed call by call by the server."""

    # ---- what a test sets up ---------------------------------------------------------------------

    def fail(self, method: str, status: int = 500, times: int = 1, body: str | None = None) -> None:
        """Answer the next `times` calls to `method` ("*" for any) with HTTP `status`."""
        self._add_fault(method, _Fault("fail", times, status=status, body=body))

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls with 429, `Retry-After` and `error: ratelimited`."""
        self._add_fault(method, _Fault("rate_limit", times, status=429, retry_after=retry_after))

    def error(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        """Answer the next `times` calls with HTTP 200 and `{"ok": false, "error": error}`."""
        self._add_fault(method, _Fault("error", times, status=200, error=error))

    def delay(self, method: str, seconds: float, times: int | None = None) -> None:
        """Answer calls to `method` `seconds` late (every call until `clear_faults`, or `times`)."""
        self._add_fault(method, _Fault("delay", times, seconds=seconds))

    def hold_response(self, method: str, seconds: float) -> None:
        """Carry out calls to `method` at once but answer `seconds` late: the call took effect in
        Slack while the bot is still waiting, the window a crash can fall into."""
        with self._lock:
            self._holds[method] = seconds

    def chaos(self, rate: float, seed: int, *, stall_s: float, retry_after: int = 1) -> None:
        """Answer a seeded `rate` of all calls as Slack does on a bad day: 429 with `Retry-After`
        and `error: ratelimited`, or a 500, neither carried out; or a connection that stalls for
        `stall_s` (set it past the client's timeout) after the call was carried out, so its
        effect lands while the answer reaches nobody."""
        with self._lock:
            self._chaos = _Chaos(random.Random(seed), rate, stall_s, retry_after)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._holds.clear()
            self._chaos = None

    def _add_fault(self, method: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(method, []).append(fault)

    # ---- what the server consults, call by call --------------------------------------------------

    def _take_faults(self, method: str) -> tuple[float, _Fault | None]:
        """The delay to apply and the fault (if any) that answers this call, consumed."""
        delay, answer = 0.0, None
        with self._lock:
            for key in (method, "*"):
                for fault in self._faults.get(key, []):
                    if fault.remaining == 0:
                        continue
                    if fault.kind == "delay":
                        delay += fault.seconds
                    elif answer is None:
                        answer = fault
                    else:
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
        return delay, answer

    def _chaos_fault(self) -> tuple[_Fault | None, float]:
        """(a fault, or a stall in seconds) for this call under `chaos`; (None, 0) for most."""
        with self._lock:
            chaos = self._chaos
            if chaos is None or chaos.rng.random() >= chaos.rate:
                return None, 0.0
            kind = chaos.rng.choice(("rate_limit", "rate_limit", "fail", "fail", "stall"))
        if kind == "rate_limit":
            return _Fault("rate_limit", 1, status=429, retry_after=chaos.retry_after), 0.0
        if kind == "fail":
            return _Fault("fail", 1, status=500), 0.0
        return None, chaos.stall_s

    def _answer_fault(self, method: str, params: dict[str, Any], fault: _Fault) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if fault.kind == "rate_limit":
            response: dict[str, Any] = {"ok": False, "error": "ratelimited"}
            headers["Retry-After"] = str(fault.retry_after)
        elif fault.kind == "error":
            response = {"ok": False, "error": fault.error}
        else:
            if fault.body is not None:
                self._record(Call(method, params, {"raw": fault.body}, fault.status, time.time(), True))
                return fault.status, {"Content-Type": "text/plain"}, fault.body.encode()
            response = {"ok": False, "error": "internal_error"}
        self._record(Call(method, params, response, fault.status, time.time(), True))
        return fault.status, headers, json.dumps(response).encode()
