"""The scheduler: a cache of the store's due times, rebuilt from it at start-up.

Each open incident has at most one APScheduler job, at the next moment `escalation.next_due`
names. When it runs, the store decides and records what fired in one transaction
(`Store.claim`), and the job is re-planned. Anything that changes an incident calls `replan`.
A due time that passed while the bot was down runs once at start-up; a key already fired
never runs again.

Sending is separate: a delivery loop sends every pending delivery (pages, reminders, status
page calls) on a small pool, sleeping until the next retry is due or until woken. Slow Slack
answers therefore never hold up the scheduler, and a retry can never be lost to a job re-planned
while it was running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from bot.config import Config
from bot.escalation import POSTMORTEM_STALE_AFTER, Firing, due_actions, next_due
from bot.handoffs import HandoffNotices
from bot.incidents import Incident
from bot.paging import Pager
from bot.store import DeliveryRecord, Store

log = logging.getLogger(__name__)

SEND_THREADS = 4
IDLE_WAIT_S = 30.0  # a safety net: the loop re-reads the store at least this often


class Timers:
    def __init__(self, config: Config, store: Store, pager: Pager, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.store = store
        self.pager = pager
        self.clock = clock
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            # Two runs of one incident's job may overlap (a re-plan while the last run finishes);
            # the store's claims make that safe, and a limit of 1 would make APScheduler skip it.
            job_defaults={"coalesce": True, "max_instances": 8, "misfire_grace_time": None},
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._active = 0
        self._idle = threading.Condition()
        self._senders = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")
        # Deliveries queued or being sent, and those finished since the loop last listed: each is
        # submitted once, however often the loop wakes or how stale its last listing is.
        self._in_flight: set[int] = set()
        self._done_since_listing: set[int] = set()
        self._in_flight_lock = threading.Lock()
        self._loop = threading.Thread(target=self._delivery_loop, name="deliveries", daemon=True)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running) and self._loop.is_alive()

    def start(self) -> None:
        self.pager.recover_interrupted()
        self.scheduler.start()
        for incident in self.store.open_incidents():
            self.replan(incident.number)
        self._replan_postmortem_reminders()
        self._loop.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop planning, let running work finish, then return (the store may be closed after)."""
        self._stopping.set()
        self._wake.set()
        if self.scheduler.running:
            # wait=False: shutdown(wait=True) holds the job-store lock while waiting, and a job
            # that re-plans needs that lock. Our own count of running work is waited on instead.
            self.scheduler.shutdown(wait=False)
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=timeout)
        self._senders.shutdown(wait=True, cancel_futures=True)
        if self._loop.is_alive():
            self._loop.join(timeout=timeout)

    @contextmanager
    def _working(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def decide(self, incident: Incident, fired: frozenset[str]) -> list[Firing]:
        return due_actions(
            incident, self.config.policy(incident.severity), fired, self.clock(), self._postmortem_after(incident)
        )

    def _postmortem_after(self, incident: Incident) -> timedelta | None:
        return self.config.postmortem_due_after if incident.severity in self.config.postmortem_severities else None

    def _replan_postmortem_reminders(self) -> None:
        """Resolved incidents whose post-mortem reminder may still be due: planned like open ones."""
        since = self.clock() - self.config.postmortem_due_after - POSTMORTEM_STALE_AFTER
        for number in self.store.resolved_since(since, self.config.postmortem_severities):
            self.replan(number)

    def replan(self, number: int) -> None:
        """Put the incident's job at its next due time (or remove it when nothing is left)."""
        if self._stopping.is_set():
            return
        incident = self.store.get(number)
        job_id = f"incident-{number}"
        if incident is not None and not incident.is_open:
            # A resolved incident's only timer is its post-mortem reminder: a job of its own, so
            # the incident's timers are seen to stop at resolve (and a reopen drops the reminder).
            self._drop(job_id)
            job_id = f"postmortem-{number}"
        else:
            self._drop(f"postmortem-{number}")
        due = None
        if incident is not None:
            due = next_due(
                incident,
                self.config.policy(incident.severity),
                self.store.fired_keys(number),
                self.clock(),
                self._postmortem_after(incident),
            )
        if due is None:
            if self.scheduler.get_job(job_id):
                self.scheduler.remove_job(job_id)
            return
        self.scheduler.add_job(self._tick, "date", run_date=due, id=job_id, args=[number], replace_existing=True)

    def _drop(self, job_id: str) -> None:
        with suppress(JobLookupError):
            self.scheduler.remove_job(job_id)

    def tick_at(self, number: int, at: datetime) -> None:
        """Run the incident's timer at `at` at the latest (a later `replan` may bring it forward)."""
        if self._stopping.is_set():
            return
        job_id = f"incident-{number}"
        self.scheduler.add_job(self._tick, "date", run_date=at, id=job_id, args=[number], replace_existing=True)

    def _tick(self, number: int) -> None:
        if self._stopping.is_set():
            return
        with self._working():
            try:
                firings = self.store.claim(number, self.decide, self.clock())
                if firings:
                    log.info("INC-%s: %s", number, ", ".join(f.key for f in firings))
                    self.wake_deliveries()
            except Exception:  # noqa: BLE001 - logged; the re-plan below keeps the incident's timer alive
                log.exception("timer for INC-%s failed", number)
            finally:
                self.replan(number)

    def start_handoffs(self, notices: HandoffNotices) -> None:
        """One more job: handoff notices, run at the next handoff of any schedule (bot/handoffs.py
        claims each handoff in the store, so a restart or an early run never notices one twice)."""

        def run() -> None:
            if self._stopping.is_set():
                return
            with self._working():
                next_at = notices.run()
            if not self._stopping.is_set():
                self.scheduler.add_job(run, "date", run_date=next_at, id="handoffs", replace_existing=True)

        self.scheduler.add_job(run, "date", run_date=self.clock(), id="handoffs", replace_existing=True)

    def wake_deliveries(self) -> None:
        """Send pending deliveries now (new pages, a manual page, a status page call)."""
        self._wake.set()

    def _delivery_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # cleared before reading, so a wake during the sends is not missed
            wait = IDLE_WAIT_S
            try:
                with self._working():
                    with self._in_flight_lock:
                        self._done_since_listing.clear()
                    for delivery in self.store.due_deliveries(self.clock()):
                        with self._in_flight_lock:
                            if delivery.id in self._in_flight or delivery.id in self._done_since_listing:
                                continue
                            self._in_flight.add(delivery.id)
                        self._senders.submit(self._send, delivery)
                    upcoming = self.store.next_delivery_at()
                if upcoming is not None:
                    wait = min(IDLE_WAIT_S, max(0.05, (upcoming - self.clock()).total_seconds()))
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("the delivery loop failed; retrying")
                wait = 1.0
            self._wake.wait(wait)

    def _send(self, delivery: DeliveryRecord) -> None:
        try:
            if not self._stopping.is_set():
                with self._working():
                    self.pager.send(delivery)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)
                self._done_since_listing.add(delivery.id)
        self._wake.set()  # a failure scheduled a retry, or a fan-out added deliveries
