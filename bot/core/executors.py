"""A thread pool with a bounded queue: work beyond `capacity` is refused, not held.

The alert intake runs on one (`IncidentBot.alert_work`): when monitoring floods the bot, the
webhook answers 503 with `Retry-After` instead of queueing without end, and the senders
(Alertmanager, Cloud Monitoring) deliver again later. People's work has a pool of its own, so it
never waits behind the flood.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any


class BoundedExecutor(Executor):
    """`workers` threads; at most `capacity` jobs queued or running at once."""

    def __init__(self, workers: int, capacity: int, name: str) -> None:
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._held = 0
        self._lock = threading.Lock()

    @property
    def queued(self) -> int:
        """Jobs accepted and not finished yet."""
        with self._lock:
            return self._held

    def has_room(self, jobs: int = 1) -> bool:
        with self._lock:
            return self._held + jobs <= self.capacity

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue a job whatever the count (the caller checked `has_room` before taking the work
        on: a notification's alerts are all recorded, so all of them are shown)."""
        with self._lock:
            self._held += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._release(None)
            raise
        future.add_done_callback(self._release)
        return future

    def _release(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._held -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
