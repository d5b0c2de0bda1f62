"""bot/timers.py: the delivery loop submits each pending delivery once, however often it wakes,
and the timers heal themselves when the store fails them for a moment."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from bot import config
from bot.domain import incidents
from bot.domain.deliveries import Delivery, Firing
from bot.domain.records import DeliveryRecord
from bot.paging.timers import JOB_THREADS, TIMER_THREADS, Timers
from bot.store import Store
from tests.conftest import FAST_CONFIG

CONFIG = config.parse(config.default_config_text(), source="built-in default")


class SlowPager:
    """Stands in for the dispatcher: takes a while per delivery, like a Slack call, and counts calls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[int] = Counter()
        self.lock = threading.Lock()

    def recover_interrupted(self) -> None:
        pass

    def may_go(self, delivery: DeliveryRecord) -> bool:
        return True

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


# -- self-healing: a failed re-plan or claim never loses a timer ------------------------------

STEPS_CONFIG = config.parse(
    FAST_CONFIG.replace("ack_within: 3s", "ack_within: 1h").replace(
        """      - {after: 0s, page: [oncall_primary]}
      - {after: 2s, page: [oncall_secondary]}
      - {after: 4s, page: [vp_product]}
      - {after: 6s, page: [ceo]}""",
        """      - {after: 0s, page: [oncall_primary]}
      - {after: 1s, page: [oncall_secondary]}
      - {after: 2s, page: [vp_product]}
      - {after: 3s, page: [ceo]}""",
    ),
    source="test",
)
STEPS = ["page:oncall_primary", "page:oncall_secondary", "page:vp_product", "page:ceo"]


class RecordingPager:
    """Stands in for the Pager: "sends" by recording, with the real store writes around it."""

    def __init__(self, store: Store, takes_s: float = 0.0) -> None:
        self.store = store
        self.takes_s = takes_s
        self.sent: Counter[int] = Counter()
        self.lock = threading.Lock()

    def recover_interrupted(self) -> None:
        pass

    def send(self, delivery: DeliveryRecord) -> None:
        if not self.store.start_delivery(delivery.id, datetime.now(UTC)):
            return
        with self.lock:
            self.sent[delivery.id] += 1
        time.sleep(self.takes_s)  # the Slack call
        self.store.finish_delivery(delivery.id, datetime.now(UTC), user=None, channel="D1", ts=f"{delivery.id}.1")

    def recover(self, delivery: DeliveryRecord) -> None:
        # As the real Pager asks Slack whether the post landed: here, whether it was recorded.
        if self.sent[delivery.id]:
            self.store.finish_delivery(delivery.id, datetime.now(UTC), user=None, channel="D1", ts="1.1")
        else:
            self.store.resume_delivery(delivery.id)

    def may_go(self, delivery: DeliveryRecord) -> bool:
        return True


class StoreFailingOnce(Store):
    """A store whose read inside `replan` fails once, right after the secondary's step is claimed."""

    def __init__(self, path: str, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self.armed = False
        self.failed = 0

    def claim(self, number, decide, now):  # type: ignore[no-untyped-def]
        firings = super().claim(number, decide, now)
        if any(f.key == "page:oncall_secondary" for f in firings):
            self.armed = True
        return firings

    def get(self, number: int):  # type: ignore[no-untyped-def]
        if self.armed:
            self.armed = False
            self.failed += 1
            raise sqlite3.OperationalError("database is locked")
        return super().get(number)


def declared_p1(store: Store) -> int:
    now = datetime.now(UTC)
    draft = incidents.declare(title="Checkout down", severity="P1", by="U1", now=now, channel="C1")
    return store.create_incident(draft, now).number


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def step_deliveries(store: Store, number: int) -> dict[str, list[DeliveryRecord]]:
    pages = store.deliveries(number, kind="page")
    return {key: [d for d in pages if d.firing_key == key] for key in STEPS}


def test_a_replan_whose_store_read_fails_once_loses_no_later_step(tmp_path):
    store = StoreFailingOnce(str(tmp_path / "t.db"))
    number = declared_p1(store)
    pager = RecordingPager(store)
    # No reconcile within the test: the re-plan's own retry must heal it.
    timers = Timers(STEPS_CONFIG, store, pager, lambda: datetime.now(UTC), reconcile_every_s=3600)  # type: ignore[arg-type]
    timers.start()
    try:
        wait_until(
            lambda: (
                all(d.status == "sent" for d in store.deliveries(number, kind="page"))
                and len(store.deliveries(number, kind="page")) == len(STEPS)
            )
        )
        time.sleep(0.5)  # a late duplicate would have been claimed by now
        assert store.failed == 1
        steps = step_deliveries(store, number)
        assert {key: len(found) for key, found in steps.items()} == dict.fromkeys(STEPS, 1)
        assert all(pager.sent[found[0].id] == 1 for found in steps.values())
        assert timers.scheduler.job_for("incident-1") is not None  # reminders and the fix nudge still planned
    finally:
        timers.stop()
        store.close()


def test_the_reconcile_job_restores_a_timer_the_scheduler_lost(tmp_path):
    store = Store(str(tmp_path / "t.db"))
    number = declared_p1(store)
    pager = RecordingPager(store)
    timers = Timers(STEPS_CONFIG, store, pager, lambda: datetime.now(UTC), reconcile_every_s=0.3)  # type: ignore[arg-type]
    timers.start()
    try:
        wait_until(lambda: store.deliveries(number, kind="page"))
        # Once the job waits for the secondary's step, drop it, as if a failure nothing retried had
        # lost it: only the reconcile can bring it back.
        wait_until(lambda: planned_later_than(timers, seconds=0.3))
        timers.scheduler.remove_job(timers.scheduler.job_for("incident-1").id)  # lost, as APScheduler lost it
        wait_until(lambda: len(store.deliveries(number, kind="page", status="sent")) == len(STEPS))
        assert {key: len(found) for key, found in step_deliveries(store, number).items()} == dict.fromkeys(STEPS, 1)
    finally:
        timers.stop()
        store.close()


def test_escalations_keep_time_while_more_placed_jobs_are_stuck_than_the_scheduler_has_threads(tmp_path):
    """Placed jobs (verify samples waiting on a Google that does not answer) run on a pool of
    their own: with every one of its threads stuck and more jobs queued behind them, a P1
    declared meanwhile still pages every step of its escalation path."""
    store = Store(str(tmp_path / "t.db"))
    pager = RecordingPager(store)
    timers = Timers(STEPS_CONFIG, store, pager, lambda: datetime.now(UTC), reconcile_every_s=3600)  # type: ignore[arg-type]
    timers.start()
    stuck = threading.Event()
    started: list[int] = []

    def hang(n: int) -> None:
        started.append(n)
        stuck.wait(30)

    try:
        for n in range(TIMER_THREADS + JOB_THREADS):  # more than both pools' threads together
            timers.place(f"verify-{n}", lambda n=n: hang(n), datetime.now(UTC))
        wait_until(lambda: len(started) >= JOB_THREADS)
        number = declared_p1(store)
        timers.tick_at(number, datetime.now(UTC))
        wait_until(lambda: len(store.deliveries(number, kind="page", status="sent")) == len(STEPS))
        assert {key: len(found) for key, found in step_deliveries(store, number).items()} == dict.fromkeys(STEPS, 1)
        assert len(started) == JOB_THREADS, "placed jobs ran beyond their own pool"
    finally:
        stuck.set()
        timers.stop()
        store.close()


def planned_later_than(timers: Timers, seconds: float) -> bool:
    job = timers.scheduler.job_for("incident-1")
    return job is not None and job.next_run_time > datetime.now(UTC) + timedelta(seconds=seconds)


LOCK_HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def test_another_process_holding_the_write_lock_across_a_due_step_loses_nothing(tmp_path):
    path = str(tmp_path / "t.db")
    store = Store(path, busy_timeout_s=0.2)
    number = declared_p1(store)
    pager = RecordingPager(store, takes_s=0.6)
    timers = Timers(STEPS_CONFIG, store, pager, lambda: datetime.now(UTC), reconcile_every_s=3600)  # type: ignore[arg-type]
    timers.start()
    holder = None
    try:
        wait_until(lambda: store.deliveries(number, status="sending"))
        # Taken while the first pages are being sent (their "sent" cannot be written), held across
        # the secondary's step (1 s) and the VP's (2 s): ten busy timeouts.
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, path, "2.0"], stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(sqlite3.OperationalError):
            store.add_event(number, datetime.now(UTC), "note", "U1", "the lock is really held")
        assert holder.wait(timeout=10) == 0
        wait_until(lambda: len(store.deliveries(number, kind="page", status="sent")) == len(STEPS))
        time.sleep(0.5)
        steps = step_deliveries(store, number)
        assert {key: len(found) for key, found in steps.items()} == dict.fromkeys(STEPS, 1)
        assert all(pager.sent[found[0].id] == 1 for found in steps.values())
        assert not store.deliveries(number, status="sending")
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()
        timers.stop()
        store.close()


def test_ticks_replans_and_reconciles_racing_never_claim_a_firing_twice(tmp_path):
    store = Store(str(tmp_path / "t.db"))
    number = declared_p1(store)
    pager = RecordingPager(store)
    timers = Timers(STEPS_CONFIG, store, pager, lambda: datetime.now(UTC), reconcile_every_s=0.05)  # type: ignore[arg-type]
    timers.start()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            timers.tick_at(number, datetime.now(UTC))
            timers.replan(number)
            timers.reconcile()
            timers._tick(number)  # a run of the job itself, beside the scheduler's own

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(store.deliveries(number, kind="page", status="sent")) == len(STEPS))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        time.sleep(0.3)
        audit = [a.detail["key"] for a in store.audit_log(number) if a.action == "fired"]
        assert len(audit) == len(set(audit)), "a key was recorded as fired twice"
        assert {key: len(found) for key, found in step_deliveries(store, number).items()} == dict.fromkeys(STEPS, 1)
        assert max(pager.sent.values()) == 1
    finally:
        timers.stop()
        store.close()
