"""The scheduler: a cache of the store's due times, rebuilt from it at start-up.

Each open incident has at most one APScheduler job, at the next moment `escalation.next_due`
names. When it runs, the store decides and records what fired in one transaction
(`Store.claim`), and the job is re-planned. Anything that changes an incident calls `replan`.
A due time that passed while the bot was down runs once at start-up; a key already fired
never runs again.

The scheduler heals itself: a re-plan or a claim that fails (a locked or briefly unavailable
database) is tried again with backoff, and a reconcile job re-plans every open incident from
the store every `reconcile_every_s`, so the jobs can never drift from the truth for longer.

Sending is separate: a delivery loop sends every pending delivery (pages, reminders, status
page calls) on a small pool, pages on a lane of their own that no backlog of other sends can
hold up, sleeping until the next retry is due or until woken. Slow Slack
answers therefore never hold up the scheduler, and a retry can never be lost to a job re-planned
while it was running. Status page calls of one incident go one at a time, in order (the Pager
decides whose turn it is), and a delivery a failed store write left half-sent is recovered.
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
# Pages (and the SLA alarm) go on a lane of their own: never queued behind a backlog of
# reminders, updates or uploads that a slow Slack has piled up.
URGENT_KINDS = frozenset({"page", "sla_breach"})
URGENT_THREADS = 2
IDLE_WAIT_S = 30.0  # a safety net: the loop re-reads the store at least this often
RECONCILE_EVERY_S = 45.0
RETRY_BASE_S = 0.5
RETRY_MAX_S = 30.0


class Timers:
    def __init__(
        self,
        config: Config,
        store: Store,
        pager: Pager,
        clock: Callable[[], datetime],
        reconcile_every_s: float = RECONCILE_EVERY_S,
        retry_base_s: float = RETRY_BASE_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.config = config
        self.store = store
        self.pager = pager
        self.clock = clock
        self.reconcile_every_s = reconcile_every_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        # Consecutive failures to plan or claim, per incident: the backoff of the next retry.
        self._failures: dict[int, int] = {}
        self._failures_lock = threading.Lock()
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
        self._urgent = ThreadPoolExecutor(max_workers=URGENT_THREADS, thread_name_prefix="page")
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
        self.reconcile()
        self.scheduler.add_job(
            self.reconcile,
            "interval",
            seconds=self.reconcile_every_s,
            id="reconcile",
            replace_existing=True,
            max_instances=1,
        )
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
        self._urgent.shutdown(wait=True, cancel_futures=True)
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
        """Put the incident's job at its next due time (or remove it when nothing is left).

        Never raises: when the store cannot be read, the incident's job is set to try again
        after a backoff, so a passing failure cannot leave an incident without a timer.
        """
        if self._stopping.is_set():
            return
        try:
            incident = self.store.get(number)
            due = None
            if incident is not None:
                policy = self.config.policy(incident.severity)
                fired = self.store.fired_keys(number)
                due = next_due(incident, policy, fired, self.clock(), self._postmortem_after(incident))
        except Exception:  # noqa: BLE001 - retried below; the reconcile job is the backstop
            log.warning("could not re-plan INC-%s; trying again shortly", number, exc_info=True)
            self._retry_soon(number)
            return
        with self._failures_lock:
            self._failures.pop(number, None)
        job_id = _job_id(number)
        if incident is not None and not incident.is_open:
            # A resolved incident's only timer is its post-mortem reminder: a job of its own, so
            # the incident's timers are seen to stop at resolve (and a reopen drops the reminder).
            self._drop(job_id)
            job_id = f"postmortem-{number}"
        else:
            self._drop(f"postmortem-{number}")
        if due is None:
            self._drop(job_id)
            return
        self.scheduler.add_job(self._tick, "date", run_date=due, id=job_id, args=[number], replace_existing=True)

    def _drop(self, job_id: str) -> None:
        with suppress(JobLookupError):  # never planned, or another thread removed it first
            self.scheduler.remove_job(job_id)

    def reconcile(self) -> None:
        """Re-plan every open incident, drop jobs of incidents no longer open, and re-plan the
        post-mortem reminders still to come, all from the store."""
        if self._stopping.is_set():
            return
        with self._working():
            self._reconcile()

    def _reconcile(self) -> None:
        try:
            incidents = self.store.open_incidents()
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("could not reconcile the timers with the store", exc_info=True)
            return
        planned = {int(job.id.removeprefix("incident-")) for job in self.scheduler.get_jobs() if _is_incident(job.id)}
        numbers = planned | {incident.number for incident in incidents}
        # A declare still being set up holds its first pages back until the war room exists (its
        # set-up re-plans when done, and the declare bounded the wait): only a missing job is healed.
        settling = {incident.number for incident in incidents if incident.announcement_ts is None} & planned
        for number in sorted(numbers - settling):
            self.replan(number)
        try:
            self._replan_postmortem_reminders()
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("could not reconcile the post-mortem reminders with the store", exc_info=True)

    def tick_at(self, number: int, at: datetime) -> None:
        """Run the incident's timer at `at` at the latest (a later `replan` may bring it forward)."""
        if self._stopping.is_set():
            return
        self.scheduler.add_job(
            self._tick, "date", run_date=at, id=_job_id(number), args=[number], replace_existing=True
        )

    def _retry_soon(self, number: int) -> None:
        """Run the incident's timer again after a backoff: it claims what is due, then re-plans."""
        with self._failures_lock:
            failures = self._failures[number] = self._failures.get(number, 0) + 1
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(failures - 1, 16))
        self.tick_at(number, self.clock() + timedelta(seconds=delay))

    def _tick(self, number: int) -> None:
        if self._stopping.is_set():
            return
        with self._working():
            try:
                firings = self.store.claim(number, self.decide, self.clock())
            except Exception:  # noqa: BLE001 - nothing was claimed: try again after a backoff
                log.exception("timer for INC-%s failed; trying again shortly", number)
                self._retry_soon(number)
                return
            if firings:
                log.info("INC-%s: %s", number, ", ".join(f.key for f in firings))
                self.wake_deliveries()
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
                    waiting: set[int] = set()  # due, but not theirs to go yet (a status page call in line)
                    now = self.clock()
                    due = self.store.urgent_due_deliveries(now, URGENT_KINDS) + self.store.due_deliveries(now)
                    for delivery in due:
                        with self._in_flight_lock:
                            if delivery.id in self._in_flight or delivery.id in self._done_since_listing:
                                continue
                        if delivery.kind == "statuspage" and not self.pager.statuspage_turn(delivery):
                            waiting.add(delivery.id)
                            continue
                        self._submit(delivery, self._send)
                    self._recover_stranded()
                    with self._in_flight_lock:
                        busy = waiting | self._in_flight
                    # Deliveries being sent or waiting their turn wake the loop when they finish.
                    upcoming = self.store.next_delivery_at(excluding=busy)
                if upcoming is not None:
                    wait = min(IDLE_WAIT_S, max(0.05, (upcoming - self.clock()).total_seconds()))
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("the delivery loop failed; retrying")
                wait = 1.0
            self._wake.wait(wait)

    def _submit(self, delivery: DeliveryRecord, work: Callable[[DeliveryRecord], None]) -> None:
        with self._in_flight_lock:
            if delivery.id in self._in_flight or delivery.id in self._done_since_listing:
                return
            self._in_flight.add(delivery.id)
        lane = self._urgent if delivery.kind in URGENT_KINDS else self._senders
        lane.submit(work, delivery)

    def _recover_stranded(self) -> None:
        """A delivery left `sending` by a send whose store write failed (a locked database) is
        not being sent by anyone: ask Slack whether it landed, else send it again."""
        for delivery in self.store.interrupted_deliveries():
            self._submit(delivery, self._recover)

    def _send(self, delivery: DeliveryRecord) -> None:
        self._run(delivery, self.pager.send)

    def _recover(self, delivery: DeliveryRecord) -> None:
        self._run(delivery, self.pager.recover)

    def _run(self, delivery: DeliveryRecord, work: Callable[[DeliveryRecord], None]) -> None:
        try:
            if not self._stopping.is_set():
                with self._working():
                    work(delivery)
        except Exception:  # noqa: BLE001 - the row stays pending or sending; the loop comes back to it
            log.exception("delivery %s of INC-%s failed", delivery.id, delivery.incident)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)
                self._done_since_listing.add(delivery.id)
        self._wake.set()  # a failure scheduled a retry, or a fan-out added deliveries


def _job_id(number: int) -> str:
    return f"incident-{number}"


def _is_incident(job_id: str) -> bool:
    return job_id.startswith("incident-") and job_id.removeprefix("incident-").isdigit()
