"""The timers' lease and its fencing token, on both stores; and Leadership taking over from a
leader that died, and standing down when it finds its lease taken."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.domain import incidents
from bot.domain.deliveries import Delivery, Firing
from bot.paging.leadership import Leadership
from bot.store import LeaseLost, Store

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two instances' stores on one database."""
    first, second = Store(store_url), Store(store_url)
    yield first, second
    first.close()
    second.close()


def page(key: str) -> Firing:
    return Firing(key, (Delivery("page", "U0PRIMARY"),))


def test_one_holder_at_a_time_and_every_takeover_raises_the_token(stores: tuple[Store, Store]) -> None:
    a, b = stores
    first = a.acquire_lease("a", 0.5)
    assert first is not None and first.token == 1
    assert b.acquire_lease("b", 0.5) is None, "a running lease is not taken"
    assert a.renew_lease("a", 1, 0.5) is not None
    time.sleep(0.6)
    second = b.acquire_lease("b", 5.0)
    assert second is not None and second.token == 2 and second.holder == "b"
    assert a.renew_lease("a", 1, 0.5) is None, "the old holder finds its lease taken"
    assert a.acquire_lease("a", 5.0) is None
    lease = a.lease()
    assert lease is not None and (lease.holder, lease.token) == ("b", 2)
    b.release_lease("b", 2)
    third = a.acquire_lease("a", 5.0)
    assert third is not None and third.token == 3, "a released lease is taken at once"
    assert [r.detail["holder"] for r in a.audit_log(None) if r.action == "lease_taken"] == ["a", "b", "a"]


def test_a_fenced_write_with_an_old_token_writes_nothing(stores: tuple[Store, Store]) -> None:
    old, new = stores
    incident = old.create_incident(
        incidents.declare(title="Checkout down", severity="P1", by="U0DECL", now=T0, channel="C0ANN"), T0
    )
    lease = old.acquire_lease("old", 0.3)
    assert lease is not None
    with old.fenced(lease.token):
        assert [f.key for f in old.claim(incident.number, lambda _i, _f: [page("page:0")], T0)] == ["page:0"]
    time.sleep(0.4)  # the old leader is paused past its lease...
    taken = new.acquire_lease("new", 5.0)
    assert taken is not None
    with new.fenced(taken.token):
        assert [f.key for f in new.claim(incident.number, lambda _i, _f: [page("page:1")], T0)] == ["page:1"]
    delivery = new.deliveries(incident.number)[-1]

    # ...and wakes: whatever it was about to write is refused, and nothing it tried is recorded.
    with old.fenced(lease.token):
        with pytest.raises(LeaseLost):
            old.claim(incident.number, lambda _i, _f: [page("page:2")], T0)
        with pytest.raises(LeaseLost):
            old.start_delivery(delivery.id, T0)
        with pytest.raises(LeaseLost):
            old.finish_delivery(delivery.id, T0, user="U0PRIMARY", channel="D0", ts="1.0")
    assert old.fired_keys(incident.number) == {"page:0", "page:1"}
    assert new.deliveries(incident.number)[-1].status == "pending"
    # Writes outside the leader's work (a user's command on any instance) are not fenced.
    assert old.record_firing(incident.number, page("manual"), T0)
    with new.fenced(taken.token):
        assert new.start_delivery(delivery.id, T0)


def test_sqlite_takes_the_lease_of_a_killed_predecessor_at_once(tmp_path) -> None:
    path = str(tmp_path / "bot.db")
    killed = Store(path)
    assert killed.acquire_lease("killed", 60.0) is not None
    killed.close()  # its lease still runs for a minute
    restarted = Store(path)
    try:
        lease = restarted.acquire_lease("restarted", 10.0, force=True)
        assert lease is not None and lease.token == 2
    finally:
        restarted.close()


class Instance:
    """A Leadership with recorded gains and losses, as the bot wires it."""

    def __init__(self, store: Store, name: str, lease_s: float) -> None:
        self.gained: list[int] = []
        self.lost = threading.Event()
        self.leadership = Leadership(store, name, lease_s, on_gain=self.gained.append, on_loss=self.lost.set)


def test_a_standby_takes_over_within_the_lease_and_the_old_leader_stands_down(pg_url: str) -> None:
    a_store, b_store = Store(pg_url), Store(pg_url)
    a, b = Instance(a_store, "a", 1.0), Instance(b_store, "b", 1.0)
    try:
        a.leadership.start()
        b.leadership.start()
        assert a.leadership.leading and a.gained == [1]
        assert not b.leadership.leading and b.gained == []
        time.sleep(1.5)  # renewals keep a leading past its first lease
        assert a.leadership.leading and not b.leadership.leading

        # a is paused: it renews no more (its thread stops without letting the lease go).
        a.leadership._stopping.set()
        a.leadership._thread.join(timeout=2)
        paused_at = time.monotonic()
        deadline = paused_at + 3.0
        while not b.gained and time.monotonic() < deadline:  # the timers start on a thread of their own
            time.sleep(0.05)
        took = time.monotonic() - paused_at
        assert b.leadership.leading and b.gained == [2]
        assert took < 1.0 + 0.25 + 0.5, f"took over after {took:.2f} s"

        # a wakes: its next step finds the lease taken and stops its timers.
        a.leadership._step()
        assert a.lost.is_set() and not a.leadership.leading
        status = a.leadership.status()
        assert status["leader"] is False and status["lease_holder"] == "b" and status["fencing_token"] == 2
    finally:
        b.leadership.stop()
        a_store.close()
        b_store.close()


def test_a_leader_that_loses_the_lease_and_takes_it_back_runs_its_timers_again(fast_bot) -> None:
    """The bot's own wiring: losing the lease stops the timers; taking it back starts them anew."""
    bot = fast_bot.bot
    fast_bot.command("declare p1 Checkout down", user="U0ALICE")
    fast_bot.slack.wait_for_dm("U0PRIMARY", "You are paged")
    # On SQLite the process takes the lease back at its next look: hold that look off.
    bot.leadership._stopping.set()
    bot.leadership._thread.join(timeout=5)
    bot.leadership._lose("test: another instance took it")
    assert not bot.timers.running and not bot.leadership.leading
    assert bot.health()["status"] == "ok", "a standby is healthy"
    time.sleep(2.5)  # the secondary (2 s) comes due while this instance does not lead
    assert not fast_bot.slack.dms_to("U0SECOND"), "no timers run without the lease"

    bot.leadership._step()  # SQLite: the lease is this process's at its next look
    assert bot.leadership.leading and bot.timers.running
    fast_bot.slack.wait_for_dm("U0SECOND", "You are paged", timeout=3)
    health = bot.health()
    assert health["leader"] is True and health["fencing_token"] == 2


class HangingRenewals:
    """A store whose lease renewals hang while `hang` is set (a connection the network dropped
    without a reset): the renewal neither succeeds nor fails until released."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.hang = False
        self.release = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self.store, name)

    def renew_lease(self, holder: str, token: int, ttl_s: float):
        if self.hang:
            self.release.wait(10)
        return self.store.renew_lease(holder, token, ttl_s)


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def test_a_renewal_that_hangs_makes_the_lease_not_current_though_it_still_leads(tmp_path) -> None:
    store = Store(str(tmp_path / "lease.db"))
    hanging = HangingRenewals(store)
    leadership = Leadership(hanging, "a", 0.4, on_gain=lambda token: None, on_loss=lambda: None)  # type: ignore[arg-type]
    leadership.start()
    try:
        assert leadership.leading and leadership.current()
        hanging.hang = True
        assert wait_for(lambda: not leadership.current()), "a lease not renewed for its length is not current"
        assert leadership.leading  # the renewal has not returned: `leading` alone cannot tell
        hanging.hang = False
        hanging.release.set()
        assert wait_for(leadership.current), "renewed again: current again"
    finally:
        leadership.stop()
        store.close()
