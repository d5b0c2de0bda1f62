"""bot/timers.py: the delivery loop submits each pending delivery once, however often it wakes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from bot import config, incidents
from bot.escalation import Delivery, Firing
from bot.store import DeliveryRecord, Store
from bot.timers import Timers

CONFIG = config.parse(config.default_config_text(), source="built-in default")


class SlowPager:
    """Stands in for the Pager: takes a while per delivery, like a Slack call, and counts calls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[int] = Counter()
        self.lock = threading.Lock()

    def recover_interrupted(self) -> None:
        pass

    def send(self, delivery: DeliveryRecord) -> None:
        with self.lock:
            self.calls[delivery.id] += 1
        time.sleep(0.01)
        if self.store.start_delivery(delivery.id, datetime.now(UTC)):
            self.store.finish_delivery(delivery.id, datetime.now(UTC), user=None, channel="D1", ts="1.1")


def test_each_pending_delivery_is_handed_to_the_pager_once(tmp_path):
    store = Store(str(tmp_path / "t.db"))
    now = datetime.now(UTC)
    inc = store.create_incident(incidents.declare(title="x", severity="P3", by="U1", now=now, channel="C1"), now)
    for i in range(60):
        store.record_firing(inc.number, Firing(f"manual:{i}", (Delivery("page", "U0BOB", "test"),)), now)
    pager = SlowPager(store)
    timers = Timers(CONFIG, store, pager, lambda: datetime.now(UTC))  # type: ignore[arg-type]
    timers.start()
    try:
        deadline = time.monotonic() + 10
        while store.deliveries(inc.number, status="pending") and time.monotonic() < deadline:
            timers.wake_deliveries()  # wakes as often as a busy bot would
            time.sleep(0.005)
        assert not store.deliveries(inc.number, status="pending")
        assert max(pager.calls.values()) == 1, "a delivery was submitted again while still queued"
        assert len(pager.calls) == len(store.deliveries(inc.number)) == 62  # 60 by hand + the P3 page and its note
    finally:
        timers.stop()
        store.close()
