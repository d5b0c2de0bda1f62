"""The scheduler: a cache of the store's due times, rebuilt from it at start-up.

Each open incident has at most one job, at the next moment `escalation.next_due` names. When
it runs, the store decides and records what fired in one transaction (`Store.claim`), the pager
sends it, and the job is re-planned. Anything that changes an incident calls `replan`. A due
time that passed while the bot was down runs once at start-up; a key already fired never runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from bot.config import Config
from bot.escalation import Firing, due_actions, next_due
from bot.incidents import Incident
from bot.paging import Pager
from bot.store import Store

log = logging.getLogger(__name__)

DELIVERY_JOB = "deliveries"


class Timers:
    def __init__(self, config: Config, store: Store, pager: Pager, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.store = store
        self.pager = pager
        self.clock = clock
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self) -> None:
        self.pager.recover_interrupted()
        self.scheduler.start()
        for incident in self.store.open_incidents():
            self.replan(incident.number)
        self.wake_deliveries()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def decide(self, incident: Incident, fired: frozenset[str]) -> list[Firing]:
        return due_actions(incident, self.config.policy(incident.severity), fired, self.clock())

    def replan(self, number: int) -> None:
        """Put the incident's job at its next due time (or remove it when nothing is left)."""
        incident = self.store.get(number)
        job_id = f"incident-{number}"
        due = None
        if incident is not None:
            now = self.clock()
            due = next_due(incident, self.config.policy(incident.severity), self.store.fired_keys(number), now)
        if due is None:
            if self.scheduler.get_job(job_id):
                self.scheduler.remove_job(job_id)
            return
        self.scheduler.add_job(self._tick, "date", run_date=due, id=job_id, args=[number], replace_existing=True)

    def _tick(self, number: int) -> None:
        try:
            firings = self.store.claim(number, self.decide, self.clock())
            if firings:
                log.info("INC-%s: %s", number, ", ".join(f.key for f in firings))
                self.pager.send_due()
        except Exception:  # noqa: BLE001 - logged; the re-plan below keeps the incident's timer alive
            log.exception("timer for INC-%s failed", number)
        finally:
            self.replan(number)
            self.wake_deliveries()

    def wake_deliveries(self) -> None:
        """Schedule the next retry of a delivery that could not be sent yet."""
        at = self.store.next_delivery_at()
        if at is None:
            return
        at = max(at, self.clock() + timedelta(milliseconds=10))
        self.scheduler.add_job(self._deliveries, "date", run_date=at, id=DELIVERY_JOB, replace_existing=True)

    def _deliveries(self) -> None:
        try:
            self.pager.send_due()
        except Exception:  # noqa: BLE001
            log.exception("sending deliveries failed")
        finally:
            self.wake_deliveries()

    def send_now(self) -> None:
        """Send pending deliveries soon, off the caller's thread (after a manual page)."""
        self.scheduler.add_job(self._deliveries, id=DELIVERY_JOB, replace_existing=True)
