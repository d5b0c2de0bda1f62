"""Reads shared by callers that ask the same question within a few seconds of each other.

Cloud Logging's read quota is per project and per minute, and in a bad hour several people
press Diagnose at once. `SharedReads.get` runs one fetch per key: a caller arriving while it
is under way waits for it, and one arriving within `ttl_s` after it finished takes its answer,
provided `accept` says the answer fits (e.g. its time window still covers the caller's).
A failure is handed to the callers already waiting and never kept for later ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Read:
    tag: Any
    started: float
    value: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class SharedReads:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reads: dict[Hashable, _Read] = {}

    def get(self, key: Hashable, tag: Any, fetch: Callable[[], Any], accept: Callable[[Any], bool]) -> Any:
        """`fetch()`'s value for `key`, or the value of a read of `key` that is under way or
        finished within `ttl_s` and whose `tag` (what it was asked for) passes `accept`."""
        with self._lock:
            now = self._clock()
            self._forget_before(now - self.ttl_s)
            read = self._reads.get(key)
            mine = read is None or not self._usable(read, now) or not accept(read.tag)
            if mine:
                read = self._reads[key] = _Read(tag, now)
        assert read is not None
        if mine:
            try:
                read.value = fetch()
            except BaseException as exc:
                read.error = exc
                with self._lock:
                    if self._reads.get(key) is read:
                        del self._reads[key]
                raise
            finally:
                read.done.set()
            return read.value
        read.done.wait()
        if read.error is not None:
            raise read.error
        return read.value

    def _usable(self, read: _Read, now: float) -> bool:
        if not read.done.is_set():
            return True  # under way: waiting costs less than asking again
        return read.error is None and now - read.started <= self.ttl_s

    def _forget_before(self, moment: float) -> None:
        stale = [k for k, r in self._reads.items() if r.done.is_set() and r.started < moment]
        for key in stale:
            del self._reads[key]
