"""The runbook's step 6, VERIFY FIX, as pure rules: samples, thresholds, the verdict. No I/O.

After a confirmed rollback or scale (or `/incident verify`) the bot watches the service for the
verify window, sampling every `verify.every`: the health endpoint, the 5xx share and p95 latency
of the service's requests since the watch began (Cloud Monitoring, or Cloud Logging when
Monitoring cannot answer), and the smoke calls. The fix held if every sample is within the
thresholds for the whole window; the first sample over one is a regression and ends the watch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.domain.policy import VerifyRules

SERIES_SHOWN = 6  # values per signal in the message: "5xx 38% → 4% → 0.6%"


class WatchStatus(StrEnum):
    """Where a watch is. The values are what the store holds: never rename one."""

    WATCHING = "watching"
    HELD = "held"  # every sample within the thresholds for the whole window
    REGRESSED = "regressed"  # a sample over a threshold: the watch ended there
    STOPPED = "stopped"  # the incident was resolved first


@dataclass(frozen=True)
class SmokeResult:
    url: str
    expect: int
    status: int | None  # None: no answer
    note: str = ""  # why there was no answer (ConnectionRefusedError, timeout)

    @property
    def ok(self) -> bool:
        return self.status == self.expect


@dataclass(frozen=True)
class Sample:
    """One look at the service, `offset_s` after the watch began."""

    offset_s: float
    health: int | None = None  # the health endpoint's status; None: no answer or not configured
    health_note: str = ""  # "not configured", or why there was no answer
    requests: int | None = None  # requests since the watch began; None: no metrics source answered
    errors: int | None = None  # of which 5xx
    p95_ms: float | None = None
    source: str = ""  # "Cloud Monitoring" or "Cloud Logging (sampled)", or "" when neither answered
    source_note: str = ""  # why the first choice was not used ("Cloud Monitoring unavailable (503)")
    smoke: tuple[SmokeResult, ...] = field(default_factory=tuple)

    @property
    def error_rate(self) -> float | None:
        if not self.requests or self.errors is None:
            return None
        return self.errors / self.requests

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "smoke"}
        data["smoke"] = [vars(s) for s in self.smoke]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        values = {k: data.get(k) for k in ("offset_s", "health", "requests", "errors", "p95_ms")}
        return cls(
            offset_s=float(values["offset_s"] or 0),
            health=values["health"],
            health_note=str(data.get("health_note") or ""),
            requests=values["requests"],
            errors=values["errors"],
            p95_ms=values["p95_ms"],
            source=str(data.get("source") or ""),
            source_note=str(data.get("source_note") or ""),
            smoke=tuple(SmokeResult(**s) for s in data.get("smoke") or []),
        )


def samples_to_text(samples: Sequence[Sample]) -> str:
    return json.dumps([s.to_json() for s in samples])


def samples_from_text(text: str | None) -> tuple[Sample, ...]:
    return tuple(Sample.from_json(d) for d in json.loads(text or "[]"))


def percent(rate: float) -> str:
    """0.38 -> `38%`, 0.006 -> `0.6%`, 0 -> `0%`."""
    value = rate * 100
    if value == 0:
        return "0%"
    if value < 10:
        return f"{value:.1f}".rstrip("0").rstrip(".") + "%"
    return f"{value:.0f}%"


def breaches(sample: Sample, rules: VerifyRules, *, health_checked: bool = True) -> list[str]:
    """What in `sample` is over a threshold, in the message's words (`5xx 12%`, `health 503`)."""
    found = []
    rate = sample.error_rate
    if rate is not None and rate >= rules.error_rate:
        found.append(f"5xx {percent(rate)}")
    if sample.p95_ms is not None and sample.p95_ms >= rules.p95_ms:
        found.append(f"p95 {sample.p95_ms:.0f} ms")
    if health_checked and sample.health != 200:
        found.append(f"health {sample.health if sample.health is not None else sample.health_note or 'no answer'}")
    for call in sample.smoke:
        if not call.ok:
            got = call.status if call.status is not None else call.note or "no answer"
            found.append(f"{call.url} {got} (expected {call.expect})")
    return found


def offset_text(seconds: float) -> str:
    """`+0s`, `+30s`, `+2m`, `+2m 30s`."""
    whole = int(round(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"+{rest}s"
    return f"+{minutes}m {rest}s" if rest else f"+{minutes}m"


def _series(values: Sequence[str]) -> str:
    shown = list(values)
    if len(shown) > SERIES_SHOWN:
        shown = [shown[0], "…", *shown[-(SERIES_SHOWN - 2) :]]
    collapsed: list[str] = []
    for value in shown:
        if not collapsed or collapsed[-1] != value:
            collapsed.append(value)
    return " → ".join(collapsed)


def series_lines(samples: Sequence[Sample], *, health_checked: bool = True) -> list[str]:
    """One short series per signal: `5xx 38% → 4% → 0.6%`, `p95 420 → 180 ms`, `health 503 → 200`."""
    lines = []
    rates = [percent(s.error_rate) if s.error_rate is not None else "no requests" for s in samples if s.source]
    if rates:
        lines.append(f"5xx {_series(rates)}")
    p95s = [f"{s.p95_ms:.0f}" for s in samples if s.p95_ms is not None]
    if p95s:
        lines.append(f"p95 {_series(p95s)} ms")
    if health_checked:
        health = [str(s.health) if s.health is not None else s.health_note or "no answer" for s in samples]
        lines.append(f"health {_series(health)}")
    urls = [c.url for c in samples[-1].smoke] if samples else []
    for url in urls:
        answers = [
            str(c.status) if c.status is not None else c.note or "no answer"
            for s in samples
            for c in s.smoke
            if c.url == url
        ]
        lines.append(f"{url} {_series(answers)}")
    return lines


def sources_used(samples: Sequence[Sample]) -> str:
    """Which metrics source the samples came from, and why not Monitoring when it was not."""
    names = sorted({s.source for s in samples if s.source})
    notes = sorted({s.source_note for s in samples if s.source_note})
    text = " and ".join(names) if names else "no metrics source answered"
    return text + (f" ({'; '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Verdict:
    status: WatchStatus
    breaches: tuple[str, ...] = ()
    at_offset_s: float = 0.0


def judge(samples: Sequence[Sample], rules: VerifyRules, window: timedelta, *, health_checked: bool) -> Verdict:
    """Watching, held (the window is over and every sample was within the thresholds), or
    regressed at the first sample over one."""
    for sample in samples:
        over = breaches(sample, rules, health_checked=health_checked)
        if over:
            return Verdict(WatchStatus.REGRESSED, tuple(over), sample.offset_s)
    if samples and samples[-1].offset_s >= window.total_seconds():
        return Verdict(WatchStatus.HELD, (), samples[-1].offset_s)
    return Verdict(WatchStatus.WATCHING)


def next_sample_at(started_at: datetime, every: timedelta, window: timedelta, taken: int) -> datetime:
    """When sample number `taken` (0-based) is due: at the start, every `every`, and the last one
    exactly at the window's end."""
    return started_at + min(every * taken, window)


@dataclass(frozen=True)
class Watch:
    """A verify watch as the store keeps it: the truth the sampling timer is rebuilt from."""

    id: int
    incident: int
    started_by: str
    started_at: datetime
    window_s: float
    every_s: float
    why: str = ""  # what is being verified: "roll back to tai-00042-xyz", or "asked by <@U1>"
    proposal: int | None = None
    channel: str | None = None
    thread_ts: str | None = None
    ts: str | None = None  # the message edited as samples arrive
    status: str = WatchStatus.WATCHING  # a WatchStatus
    samples: tuple[Sample, ...] = ()
    finished_at: datetime | None = None

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=self.window_s)

    @property
    def every(self) -> timedelta:
        return timedelta(seconds=self.every_s)

    @property
    def next_at(self) -> datetime:
        """The next sample's time: the next multiple of `every` after the last sample (so a
        restart after a long stop takes one sample, not one per missed slot), the last one at
        the window's end."""
        if not self.samples:
            return self.started_at
        slot = math.floor(self.samples[-1].offset_s / self.every_s + 1e-6) + 1
        return next_sample_at(self.started_at, self.every, self.window, slot)

    @property
    def over(self) -> bool:
        """The last sample taken was at (or after) the window's end."""
        return bool(self.samples) and self.samples[-1].offset_s >= self.window_s - 0.05
