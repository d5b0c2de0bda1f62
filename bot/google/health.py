"""The service's health endpoint: one GET, timed, its status and the start of its body."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from bot.domain.service import HealthResult

HEALTH_BODY_CHARS = 200


def probe_health(url: str, *, timeout_s: float) -> HealthResult:
    """GET `url`; an HTTP error status is a result, a network failure raises."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"health_url must be http(s), got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "incident-bot/diagnose"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status, raw = response.status, response.read(4096)
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read(4096)
    latency_ms = (time.perf_counter() - started) * 1000
    body = raw.decode("utf-8", "replace").strip()[:HEALTH_BODY_CHARS]
    return HealthResult(url=url, status=status, latency_ms=round(latency_ms, 1), body=body)
