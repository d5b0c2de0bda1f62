"""Which instance runs the timers and the delivery loop: the holder of the store's lease.

Every instance serves HTTP; one, the leader, holds the lease (a row in the store with a holder,
an expiry by the database's clock, and a fencing token that every takeover increases) and renews
it every quarter of its length. The others look at it as often, and take it once it has expired,
so a dead leader is replaced within the lease's length plus a quarter of it.

A leader that finds its lease taken (it was paused, or cut off from the database, for longer than
the lease) stops its timers at once; and whatever it was about to write before it noticed is
refused by the store, since every write the leader's work makes checks the token in its own
transaction (`Store.fenced`). On SQLite there is one process per file: it takes the lease at
start whatever the row says (a killed predecessor's lease would otherwise delay every restart).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bot.domain.records import Lease
from bot.store import Store

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 10.0


def instance_name() -> str:
    """Unique per process: a restarted process is a new holder, which waits for the old lease."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leadership:
    def __init__(
        self,
        store: Store,
        instance: str,
        lease_s: float,
        on_gain: Callable[[int], None],
        on_loss: Callable[[], None],
    ) -> None:
        self.store = store
        self.instance = instance
        self.lease_s = lease_s
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.token: int | None = None
        self._renewed_at = 0.0  # monotonic time of the last successful take or renewal
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._changing = threading.Lock()
        self._transition = threading.RLock()  # starting and stopping the timers, one at a time

    @property
    def leading(self) -> bool:
        return self.token is not None

    def current(self) -> bool:
        """This instance leads and took or renewed its lease within the lease's length. A renewal
        stuck on an unanswering store keeps `leading` true until it returns, though a standby
        may have taken the lease meanwhile: the heartbeat asks this instead."""
        return self.token is not None and time.monotonic() - self._renewed_at <= self.lease_s

    @property
    def interval_s(self) -> float:
        return self.lease_s / 4

    def start(self) -> None:
        """Try for the lease once now (a SQLite process, or the first instance, leads before it
        reports ready), then keep renewing or watching in the background."""
        self._step()
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing; a leader steps down and lets its lease expire now, so a standby takes over
        at its next look instead of after the lease's length."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.lease_s)
        token = self.token
        if token is not None:
            self._lose("stopping")
            try:
                self.store.release_lease(self.instance, token)
            except Exception:  # noqa: BLE001 - it expires on its own
                log.warning("could not release the lease; it expires on its own", exc_info=True)

    def status(self) -> dict[str, Any]:
        """For the health endpoint: whether this instance leads, the token, and the lease's age."""
        lease: Lease | None = None
        try:
            lease = self.store.lease()
        except Exception:  # noqa: BLE001 - health reports what it can
            log.warning("could not read the lease", exc_info=True)
        return {
            "leader": self.leading,
            "instance": self.instance,
            "fencing_token": self.token if self.leading else (lease.token if lease else None),
            "lease_holder": lease.holder if lease else None,
            "lease_age_s": round(lease.now - lease.acquired_at, 3) if lease else None,
            "lease_renewed_s_ago": round(lease.now - lease.renewed_at, 3) if lease else None,
        }

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            self._step()

    def _step(self) -> None:
        token = self.token
        try:
            if token is None:
                lease = self.store.acquire_lease(self.instance, self.lease_s, force=self.store.dialect == "sqlite")
                if lease is not None:
                    self._gain(lease)
                return
            if self.store.renew_lease(self.instance, token, self.lease_s) is None:
                self._lose("another instance has taken the lease")
                return
            self._renewed_at = time.monotonic()
        except Exception:  # noqa: BLE001 - the database is unreachable: try again at the next step
            log.warning("could not reach the store to take or renew the lease", exc_info=True)
            if token is not None and time.monotonic() - self._renewed_at > self.lease_s:
                # Another instance may have taken over by now: stop before it is certain.
                self._lose("the lease could not be renewed before it expired")

    def _gain(self, lease: Lease) -> None:
        with self._changing:
            self.token = lease.token
            self._renewed_at = time.monotonic()
        log.warning("instance %s took the lease (fencing token %s): it runs the timers", self.instance, lease.token)
        if threading.current_thread() is self._thread:
            # Starting the timers asks Slack about interrupted sends, which an outage can make
            # slower than the lease: renewals must not wait for it.
            threading.Thread(target=self._start_leading, args=(lease,), name="take-over", daemon=True).start()
        else:
            self._start_leading(lease)

    def _start_leading(self, lease: Lease) -> None:
        with self._transition:
            if self.token != lease.token:  # lost again before it started
                return
            self._start_timers(lease)

    def _start_timers(self, lease: Lease) -> None:
        try:
            self.on_gain(lease.token)
        except Exception:  # noqa: BLE001 - without its timers this instance must not lead
            log.exception("could not start the timers after taking the lease; stepping down")
            self._lose("the timers did not start")
            try:
                self.store.release_lease(self.instance, lease.token)
            except Exception:  # noqa: BLE001
                log.warning("could not release the lease", exc_info=True)

    def _lose(self, why: str) -> None:
        with self._changing:
            token, self.token = self.token, None
        if token is None:
            return
        log.warning("instance %s lost the lease (fencing token %s): %s; it stops its timers", self.instance, token, why)
        try:
            with self._transition:  # after a start under way: stopping half-started timers leaves threads behind
                self.on_loss()
        except Exception:  # noqa: BLE001
            log.exception("stopping the timers after losing the lease failed")
