"""The timers' scheduler outlives a date job that removes or replaces its own job while running.

APScheduler removes a date job right after handing it to its executor. `Timers._tick` re-plans
the incident, which drops or replaces that same job; when the job got there first, the
scheduler's own removal raised JobLookupError in the scheduler's thread and ended it, and every
timer with it. The debug executor runs the job in the scheduler's thread, before that removal,
which makes the race deterministic.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.debug import DebugExecutor

from bot.paging.timers import _Scheduler


def test_a_job_that_drops_itself_does_not_stop_the_scheduler() -> None:
    scheduler = _Scheduler(timezone="UTC", executors={"default": DebugExecutor()})
    later = threading.Event()
    scheduler.start()
    try:
        scheduler.add_job(lambda: scheduler.remove_job("self"), "date", run_date=datetime.now(UTC), id="self")
        scheduler.add_job(later.set, "date", run_date=datetime.now(UTC), id="later")
        assert later.wait(5), "the scheduler's thread died: no job runs any more"
        assert scheduler._thread.is_alive()
    finally:
        scheduler.shutdown(wait=False)


def test_a_job_that_places_itself_again_keeps_its_new_placement() -> None:
    """The scheduler removes a date job by its id right after running it: under one id for
    ever, a job that re-planned itself was removed with it and its timer lost."""
    scheduler = _Scheduler(timezone="UTC", executors={"default": DebugExecutor()})
    again = threading.Event()
    runs: list[int] = []

    def tick() -> None:
        runs.append(1)
        if len(runs) == 1:
            scheduler.place("incident-1", tick, datetime.now(UTC) + timedelta(milliseconds=50))
        else:
            again.set()

    scheduler.start()
    try:
        scheduler.place("incident-1", tick, datetime.now(UTC))
        assert again.wait(5), "the re-placed job was removed with the one that ran"
        assert scheduler.job_for("incident-1") is None and scheduler.placed() == set()
    finally:
        scheduler.shutdown(wait=False)
