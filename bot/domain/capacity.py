"""What Cloud Monitoring says about the service's containers and traffic, per minute, for the
runbook's Scenario 8 (memory) and 9 (traffic spike / rate limiting), and the pure reading of
it. `bot.google.metrics` fetches; `bot.domain.triage` names the scenario. No I/O, no clock:
`now` is passed in.

When Cloud Monitoring cannot answer, the finding carries `source = Cloud Logging` and why,
with no series: the rules then read the log signals, and the reason says which was used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

MONITORING = "Cloud Monitoring"
LOGGING = "Cloud Logging"

MEMORY_HIGH = 0.90  # Scenario 8's alert: memory usage > 90 % sustained for 5 minutes
MEMORY_SUSTAINED = timedelta(minutes=5)
MEMORY_GROWTH = 0.10  # 10 points more than 15 minutes ago: growing (leak), else stable
REQUESTS_PER_S_HIGH = 1000.0  # Scenario 9's alert: request rate > 1000 req/s
TRAFFIC_JUMP = 3.0  # the last minutes against the window's first: "10x normal" starts here
SCALE_JUMP = 2.0  # instances now against the window's first minutes


@dataclass(frozen=True)
class Point:
    """One aligned minute: the interval's end and its value."""

    at: datetime
    value: float


@dataclass(frozen=True)
class CapacityFinding:
    source: str  # MONITORING, or LOGGING when Monitoring could not answer
    memory: tuple[Point, ...] = ()  # p99 memory utilisation across instances, 0..1, oldest first
    instances: tuple[Point, ...] = ()  # container instances (every state), oldest first
    requests: tuple[Point, ...] = ()  # requests per minute, oldest first
    rate_limited: tuple[Point, ...] = ()  # 429 answers per minute, oldest first
    note: str = ""  # why Cloud Monitoring was not used

    @property
    def from_monitoring(self) -> bool:
        return self.source == MONITORING


@dataclass(frozen=True)
class MemoryPressure:
    latest: float
    lowest_recent: float  # over the sustained span: all of it above the line
    first: float  # the window's oldest minute
    growing: bool
    series: tuple[float, ...]


def memory_pressure(finding: CapacityFinding, now: datetime) -> MemoryPressure | None:
    """Memory above MEMORY_HIGH in every minute of the last MEMORY_SUSTAINED, or None."""
    points = [p for p in finding.memory if p.at <= now]
    recent = [p for p in points if p.at > now - MEMORY_SUSTAINED]
    # The last minutes may not be visible yet (ingestion delay): need most of the span.
    if len(recent) < MEMORY_SUSTAINED.total_seconds() // 60 - 2:
        return None
    lowest = min(p.value for p in recent)
    if lowest <= MEMORY_HIGH:
        return None
    first, latest = points[0].value, points[-1].value
    return MemoryPressure(
        latest=latest,
        lowest_recent=lowest,
        first=first,
        growing=latest - first >= MEMORY_GROWTH,
        series=tuple(p.value for p in points),
    )


@dataclass(frozen=True)
class TrafficSpike:
    peak_per_s: float
    before_per_min: float  # the window's first five minutes, per minute
    recent_per_min: float  # the last five minutes, per minute
    rate_limited: int  # 429 answers in the window
    requests: int  # requests in the window
    instances_before: int
    instances_now: int

    @property
    def jump(self) -> float:
        return self.recent_per_min / self.before_per_min if self.before_per_min else float("inf")


def traffic_spike(finding: CapacityFinding, now: datetime, span: timedelta = timedelta(minutes=5)) -> TrafficSpike:
    """The window's traffic and scaling in the numbers Scenario 9 speaks of."""
    requests = [p for p in finding.requests if p.at <= now]
    instances = [p for p in finding.instances if p.at <= now]
    start = min((p.at for p in requests), default=now)
    before = [p.value for p in requests if p.at <= start + span]
    recent = [p.value for p in requests if p.at > now - span]
    early = [p.value for p in instances if p.at <= (instances[0].at + span if instances else now)]
    return TrafficSpike(
        peak_per_s=max((p.value / 60 for p in requests), default=0.0),
        before_per_min=_mean(before),
        recent_per_min=_mean(recent),
        rate_limited=int(sum(p.value for p in finding.rate_limited if p.at <= now)),
        requests=int(sum(p.value for p in requests)),
        instances_before=int(round(_mean(early))),
        instances_now=int(instances[-1].value) if instances else 0,
    )


def series_text(values: Sequence[float], percent: bool = False, most: int = 4) -> str:
    """`62% → 78% → 91% → 97%`: a few evenly spaced values, the last one always shown."""
    if not values:
        return "n/a"
    if len(values) > most:
        step = (len(values) - 1) / (most - 1)
        values = [values[round(i * step)] for i in range(most)]
    shown = [f"{v * 100:.0f}%" if percent else f"{v:,.0f}" for v in values]
    return " → ".join(shown)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
