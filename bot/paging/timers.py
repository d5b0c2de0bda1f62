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
while it was running. Status page calls of one incident go one at a time, in order (the dispatcher
decides whose turn it is), and a delivery a failed store write left half-sent is recovered.

Only the leader (bot/leadership.py) runs them: `start(fence)` when it takes the lease, `stop()`
when it loses it (and `start` again if it takes it back). Every store write its work makes is
fenced with the lease's token. On an instance that does not lead, `replan` and
`wake_deliveries` tell the leader instead (`Store.notify_work`), which re-plans within moments.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from datetime import datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobPool
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from bot.core import counters as metrics
from bot.delivery.dispatch import Dispatcher
from bot.domain.deliveries import OUTSIDE_KINDS, URGENT_KINDS, Firing
from bot.domain.escalation import POSTMORTEM_STALE_AFTER, due_actions, next_due
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import DeliveryRecord
from bot.oncall.handoffs import HandoffNotices
from bot.oncall.readiness import DailyCheck
from bot.paging.heartbeat import Heartbeat
from bot.store import LeaseLost, Store

log = logging.getLogger(__name__)

SEND_THREADS = 4
# Pages (and the SLA alarm, URGENT_KINDS) go on a lane of their own: never queued behind a
# backlog of reminders, updates or uploads that a slow Slack has piled up.
URGENT_THREADS = 4
# Events to services other than Slack (PagerDuty, OUTSIDE_KINDS): a lane of their own, so one
# that is down or slow never takes a thread Slack's pages or posts need.
OUTSIDE_THREADS = 2
IDLE_WAIT_S = 30.0  # a safety net: the loop re-reads the store at least this often
RECONCILE_EVERY_S = 45.0
RETRY_BASE_S = 0.5
RETRY_MAX_S = 30.0
STOP_BOUND_S = 5.0  # how long stopping waits for senders before leaving them behind
# The scheduler's own threads, in two pools: the incident timers (who is paged next, reminders)
# and the leader's bookkeeping on one; every other job (a verify sample waiting on Google, a
# set-up or an alert's Slack work retried later, handoff notices, the readiness check) on the
# other, so ten watches stuck on a slow Cloud Monitoring never hold back an escalation.
TIMER_THREADS = 10
JOB_THREADS = 8
JOBS = "jobs"  # the executor of `place`d work


class Timers:
    def __init__(
        self,
        config: Config,
        store: Store,
        deliveries: Dispatcher,
        clock: Callable[[], datetime],
        reconcile_every_s: float = RECONCILE_EVERY_S,
        retry_base_s: float = RETRY_BASE_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        self.config = config
        self.store = store
        self.deliveries = deliveries
        self.clock = clock
        self.reconcile_every_s = reconcile_every_s
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        # Consecutive failures to plan or claim, per incident: the backoff of the next retry.
        self._failures: dict[int, int] = {}
        self._failures_lock = threading.Lock()
        self._active = 0
        self._idle = threading.Condition()
        self._in_flight_lock = threading.Lock()
        # The lease's token while this instance leads (None on a never-fenced, single process).
        self.fence: int | None = None
        self.leading = False
        # Other timers kept in the store (verify watches): each planner re-places its jobs from
        # the store at start-up, at every reconcile and when another instance says so.
        self._planners: list[Callable[[], None]] = []
        self.heartbeat: Heartbeat | None = None
        # Whether the lease this leadership runs under was renewed within its length (set by the
        # runtime to `Leadership.current`): a leader whose renewals hang must not ping.
        self.lease_current: Callable[[], bool] = lambda: True
        self._build()
        self._stopping.set()  # nothing runs before start()

    def _build(self) -> None:
        """Fresh scheduler, loop and senders: a leader that lost the lease and takes it back starts anew."""
        self.scheduler = _Scheduler(
            timezone="UTC",
            executors={"default": JobPool(TIMER_THREADS), JOBS: JobPool(JOB_THREADS)},
            # Two runs of one incident's job may overlap (a re-plan while the last run finishes);
            # the store's claims make that safe, and a limit of 1 would make APScheduler skip it.
            job_defaults={"coalesce": True, "max_instances": 8, "misfire_grace_time": None},
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._senders = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="send")
        self._urgent = ThreadPoolExecutor(max_workers=URGENT_THREADS, thread_name_prefix="page")
        self._outside = ThreadPoolExecutor(max_workers=OUTSIDE_THREADS, thread_name_prefix="outside")
        # Deliveries queued or being sent, and those finished since the loop last listed: each is
        # submitted once, however often the loop wakes or how stale its last listing is.
        self._in_flight: set[int] = set()
        self._done_since_listing: set[int] = set()
        self._loop = threading.Thread(target=self._delivery_loop, name="deliveries", daemon=True)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running) and self._loop.is_alive()

    def _fenced(self) -> AbstractContextManager[None]:
        return self.store.fenced(self.fence) if self.fence is not None else nullcontext()

    def start(self, fence: int | None = None) -> None:
        """Start leading: rebuild every timer from the store and start sending.

        `fence`: the lease's token; every store write of this work is refused once it changes."""
        if self._loop.ident is not None:  # started before and stopped since: start anew
            self._build()
        self._stopping.clear()
        self.fence = fence
        self.leading = True
        # This leadership's senders stop calling Slack once it ends (see `stop`).
        self.deliveries.stopping = self._stopping
        with self._fenced():
            self.deliveries.recover_interrupted()
        # Started paused while every job is planned: each job added to a running scheduler wakes
        # its thread, and with a thousand open incidents those wake-ups fought the rebuild for the
        # GIL (README: Performance). Jobs already due run as soon as it resumes.
        self.scheduler.start(paused=True)
        self.reconcile()
        self.scheduler.resume()
        self.scheduler.add_job(
            self.reconcile,
            "interval",
            seconds=self.reconcile_every_s,
            id="reconcile",
            replace_existing=True,
            max_instances=1,
        )
        self._loop.start()
        self._start_heartbeat()

    def _start_heartbeat(self) -> None:
        """The dead man's switch (`heartbeat:`), a job of this leader's scheduler only."""
        rules = self.config.heartbeat
        if rules is None:
            return
        self.heartbeat = Heartbeat(
            rules,
            self.store,
            self.clock,
            leading=lambda: self.leading and not self._stopping.is_set(),
            running=lambda: self.running,
            lease_current=lambda: self.lease_current(),
        )
        self.heartbeat.start()
        self.scheduler.add_job(
            self.heartbeat.run,
            "interval",
            seconds=rules.every.total_seconds(),
            id="heartbeat",
            replace_existing=True,
            max_instances=1,
        )

    def stop(self, timeout: float = STOP_BOUND_S) -> None:
        """Stop planning and sending; wait at most `timeout` for running work, then return.

        Senders are not waited for beyond the bound (one may be asleep on a `Retry-After`, or on a
        pool connection during a database failover): they call Slack no more, their store writes
        are fenced, and the deliveries they hold are taken over after their sending deadline."""
        self.leading = False
        self._stopping.set()
        self._wake.set()
        if self.scheduler.running:
            # wait=False: shutdown(wait=True) holds the job-store lock while waiting, and a job
            # that re-plans needs that lock. Our own count of running work is waited on instead.
            self.scheduler.shutdown(wait=False)
        self._senders.shutdown(wait=False, cancel_futures=True)
        self._urgent.shutdown(wait=False, cancel_futures=True)
        self._outside.shutdown(wait=False, cancel_futures=True)
        bound = time.monotonic() + timeout
        with self._idle:
            if not self._idle.wait_for(lambda: self._active == 0, timeout=timeout):
                log.warning("%s sends or timer runs still under way after %.0f s: left behind", self._active, timeout)
        if self._loop.is_alive() and self._loop is not threading.current_thread():
            self._loop.join(timeout=max(0.0, bound - time.monotonic()))

    @contextmanager
    def _working(self) -> Iterator[None]:
        with self._idle:
            self._active += 1
        try:
            with self._fenced():
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
        On an instance that does not lead, the leader is told to re-plan it.
        """
        if not self.leading:
            self._tell_leader(number)
            return
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
        key = _job_id(number)
        if incident is not None and not incident.is_open:
            # A resolved incident's only timer is its post-mortem reminder: a job of its own, so
            # the incident's timers are seen to stop at resolve (and a reopen drops the reminder).
            self.scheduler.unplace(key)
            key = f"postmortem-{number}"
        else:
            self.scheduler.unplace(f"postmortem-{number}")
        if due is None:
            self.scheduler.unplace(key)
            return
        self.scheduler.place(key, self._tick, due, [number, due])

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
        planned = {int(key.removeprefix("incident-")) for key in self.scheduler.placed() if _is_incident(key)}
        numbers = planned | {incident.number for incident in incidents}
        for number in sorted(numbers):
            self.replan(number)
        try:
            self._replan_postmortem_reminders()
        except Exception:  # noqa: BLE001 - the next round tries again
            log.warning("could not reconcile the post-mortem reminders with the store", exc_info=True)
        self._run_planners()

    def add_planner(self, plan: Callable[[], None]) -> None:
        """Another kind of timer kept in the store: `plan` places its jobs (with `place`) from the
        store, and is run at start-up, at every reconcile and on another instance's notice."""
        self._planners.append(plan)

    def _run_planners(self) -> None:
        for plan in self._planners:
            try:
                plan()
            except Exception:  # noqa: BLE001 - the next reconcile tries again
                log.warning("a planner could not place its timers", exc_info=True)

    def place(self, key: str, run: Callable[[], None], at: datetime) -> None:
        """Run `run()` at `at` as `key`'s one job (on the leader; elsewhere the leader is told,
        and its planners place it from the store)."""
        if not self.leading:
            self._tell_leader(None)
            return
        if self._stopping.is_set():
            return

        def job() -> None:
            if self._stopping.is_set():
                return
            with self._working():
                run()

        self.scheduler.place(key, job, at, executor=JOBS)

    def tick_at(self, number: int, at: datetime) -> None:
        """Run the incident's timer at `at` at the latest (a later `replan` may bring it forward)."""
        if not self.leading:
            self._tell_leader(number, at)
            return
        if self._stopping.is_set():
            return
        self.scheduler.place(_job_id(number), self._tick, at, [number])

    def _retry_soon(self, number: int) -> None:
        """Run the incident's timer again after a backoff: it claims what is due, then re-plans."""
        with self._failures_lock:
            failures = self._failures[number] = self._failures.get(number, 0) + 1
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** min(failures - 1, 16))
        self.tick_at(number, self.clock() + timedelta(seconds=delay))

    def _tick(self, number: int, due: datetime | None = None) -> None:
        """Claim what is due for the incident; `due` is when this run was planned for (for the
        timer-lag metric: a run after downtime or a busy scheduler shows how late it came)."""
        if self._stopping.is_set():
            return
        with self._working():
            try:
                firings = self.store.claim(number, self.decide, self.clock())
            except LeaseLost as exc:  # the new leader has this incident: nothing was claimed here
                log.warning("INC-%s not claimed: %s", number, exc)
                return
            except Exception:  # noqa: BLE001 - nothing was claimed: try again after a backoff
                log.exception("timer for INC-%s failed; trying again shortly", number)
                self._retry_soon(number)
                return
            if firings:
                if due is not None:
                    metrics.TIMER_LAG.observe(max(0.0, (self.clock() - due).total_seconds()))
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
                self.scheduler.place("handoffs", run, next_at, executor=JOBS)

        self.scheduler.place("handoffs", run, self.clock(), executor=JOBS)

    def start_oncall_checks(self, checks: DailyCheck) -> None:
        """One more job: the daily on-call readiness check, at `oncall_checks.at` (bot/oncall/readiness.py
        claims each day's run in the store, so a restart or an early run never checks a day twice)."""

        def run() -> None:
            if self._stopping.is_set():
                return
            with self._working():
                next_at = checks.run()
            if not self._stopping.is_set():
                self.scheduler.place("oncall-checks", run, next_at, executor=JOBS)

        self.scheduler.place("oncall-checks", run, self.clock(), executor=JOBS)

    def wake_deliveries(self) -> None:
        """Send pending deliveries now (new pages, a manual page, a status page call)."""
        if not self.leading:
            self._tell_leader(None)
            return
        self._wake.set()

    def _tell_leader(self, number: int | None, at: datetime | None = None) -> None:
        try:
            self.store.notify_work(number, at)
        except Exception:  # noqa: BLE001 - the leader's reconcile finds it within reconcile_every_s
            log.warning("could not tell the leader about INC-%s", number, exc_info=True)

    def on_notice(self, number: int | None, at: datetime | None = None) -> None:
        """Another instance made work: an incident to re-plan (an ack, a declare's finished
        set-up), one to look at by `at` at the latest (a declare still being set up), or deliveries."""
        if not self.leading:
            return
        if number is not None and at is not None:
            self.tick_at(number, at)
        elif number is not None:
            self.replan(number)
        else:
            self._run_planners()
        self.wake_deliveries()

    def _delivery_loop(self) -> None:
        stopping = self._stopping  # its own: a restart after a lost lease gives the next loop a new one
        while not stopping.is_set():
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
                        if not self.deliveries.may_go(delivery):
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
            except LeaseLost as exc:  # leadership stops this loop; until then, nothing is sent
                log.warning("the delivery loop stopped sending: %s", exc)
                wait = 1.0
            except Exception:  # noqa: BLE001 - the loop must outlive any one failure
                log.exception("the delivery loop failed; retrying")
                wait = 1.0
            self._wake.wait(wait)

    def _submit(self, delivery: DeliveryRecord, work: Callable[[DeliveryRecord], None]) -> None:
        with self._in_flight_lock:
            if delivery.id in self._in_flight or delivery.id in self._done_since_listing:
                return
            self._in_flight.add(delivery.id)
        if delivery.kind in URGENT_KINDS:
            lane = self._urgent
        elif delivery.kind in OUTSIDE_KINDS:
            lane = self._outside
        else:
            lane = self._senders
        lane.submit(work, delivery)

    def _recover_stranded(self) -> None:
        """A delivery left `sending` past its sending deadline (a send whose store write failed,
        a sender that died or froze, on this instance or another) is not being sent by anyone:
        ask Slack whether it landed, else send it again. The loop wakes when a deadline passes."""
        for delivery in self.store.interrupted_deliveries(self.clock()):
            self._submit(delivery, self._recover)

    def _send(self, delivery: DeliveryRecord) -> None:
        self._run(delivery, self.deliveries.send)

    def _recover(self, delivery: DeliveryRecord) -> None:
        self._run(delivery, self.deliveries.recover)

    def _run(self, delivery: DeliveryRecord, work: Callable[[DeliveryRecord], None]) -> None:
        try:
            if not self._stopping.is_set():
                with self._working():
                    work(delivery)
        except LeaseLost as exc:
            log.warning("delivery %s of INC-%s left to the new leader: %s", delivery.id, delivery.incident, exc)
        except Exception:  # noqa: BLE001 - the row stays pending or sending; the loop comes back to it
            log.exception("delivery %s of INC-%s failed", delivery.id, delivery.incident)
        finally:
            with self._in_flight_lock:
                self._in_flight.discard(delivery.id)
                self._done_since_listing.add(delivery.id)
        self._wake.set()  # a failure scheduled a retry, or a fan-out added deliveries


class _Scheduler(BackgroundScheduler):
    """APScheduler's background scheduler, safe against a date job that re-plans itself.

    After handing a date job to its executor the scheduler removes it by its id. A job that
    re-planned itself under that same id (`replace_existing`) was removed with it, and its timer
    lost until the next reconcile; so `place` gives each placement an id of its own and removes
    the one before. And if the job already dropped itself, that removal finds nothing: its
    JobLookupError would end the scheduler's thread, and every timer with it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._placed: dict[str, str] = {}  # key (incident-7, handoffs) -> the id of its one job
        self._placed_lock = threading.Lock()
        self._placements = itertools.count(1)

    def place(
        self,
        key: str,
        func: Callable[..., Any],
        run_date: datetime,
        args: Sequence[Any] = (),
        executor: str = "default",
    ) -> None:
        """Run `func(*args)` at `run_date` as `key`'s one job, instead of the one before."""
        with self._placed_lock:
            previous = self._placed.get(key)
            job_id = self._placed[key] = f"{key}@{next(self._placements)}"
            self.add_job(func, "date", run_date=run_date, id=job_id, args=list(args), executor=executor)
            if previous is not None:
                with suppress(JobLookupError):  # it ran (and was removed) or never was added
                    super().remove_job(previous)

    def unplace(self, key: str) -> None:
        with self._placed_lock:
            previous = self._placed.pop(key, None)
            if previous is not None:
                with suppress(JobLookupError):
                    super().remove_job(previous)

    def job_for(self, key: str) -> Job | None:
        """`key`'s job, if one is still to run."""
        with self._placed_lock:
            job_id = self._placed.get(key)
        return self.get_job(job_id) if job_id is not None else None

    def placed(self) -> set[str]:
        """The keys whose job is still to run."""
        with self._placed_lock:
            return {key for key, job_id in self._placed.items() if self.get_job(job_id) is not None}

    def remove_job(self, job_id: str, jobstore: str | None = None) -> None:
        if threading.current_thread() is not getattr(self, "_thread", None):
            super().remove_job(job_id, jobstore)
            return
        with suppress(JobLookupError):
            super().remove_job(job_id, jobstore)


def _job_id(number: int) -> str:
    return f"incident-{number}"


def _is_incident(job_id: str) -> bool:
    return job_id.startswith("incident-") and job_id.removeprefix("incident-").isdigit()
