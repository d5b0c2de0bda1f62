"""The bot's own numbers, for Prometheus at `GET /metrics`.

Counters and histograms are process-wide (one bot per process in production), declared once
here and incremented where the thing happens. Figures that the store already knows (the
delivery backlog, open incidents) are read from it at scrape time by a collector the bot
registers for itself, so they are never a second copy that can drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bot.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

COMMANDS = Counter(
    "incident_bot_commands",
    "Slash commands, button clicks and form submissions handled, by verb (or action) and outcome.",
    ["verb", "outcome"],  # outcome: ok | usage_error | forbidden | error
)
DELIVERIES_SENT = Counter(
    "incident_bot_deliveries_sent",
    "Messages the bot owed that Slack (or the status page) accepted, by kind (page, fyi, reminder...).",
    ["kind"],
)
SLACK_API_ERRORS = Counter(
    "incident_bot_slack_api_errors",
    "Slack Web API calls that failed after retries, by method and error code.",
    ["method", "code"],
)
DIAGNOSE_SECONDS = Histogram(
    "incident_bot_diagnose_seconds",
    "Time from a diagnose request to its summary.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
)
ROLLBACK_SECONDS = Histogram(
    "incident_bot_fix_seconds",
    "Time from a confirmed rollback or scale change to its verified outcome.",
    ["kind", "outcome"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
TIMER_LAG = Histogram(
    "incident_bot_timer_lag_seconds",
    "How late a timer (page, reminder, nudge) fired after the moment it was due.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class StoreCollector(Collector):
    """Gauges read from the store at scrape time."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        depth, oldest = self.store.delivery_backlog()
        age = max(0.0, (self.clock() - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "incident_bot_delivery_queue_depth", "Deliveries not yet accepted (pending or being sent).", value=depth
        )
        yield GaugeMetricFamily(
            "incident_bot_delivery_oldest_age_seconds", "Age of the oldest delivery not yet accepted.", value=age
        )
        yield GaugeMetricFamily(
            "incident_bot_open_incidents", "Incidents not yet resolved.", value=len(self.store.open_incidents())
        )


def bot_registry(store: Store, clock: Callable[[], datetime]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, clock))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The process-wide metrics followed by this bot's own, in Prometheus' text format."""
    return generate_latest(REGISTRY) + generate_latest(registry)
