"""The bot's numbers at `GET /metrics`: the process-wide counters of `bot.core.counters`, and
gauges the store already knows (the delivery backlog, open incidents), read from it at scrape
time so they are never a second copy that can drift from the truth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
