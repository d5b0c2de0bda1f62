"""The store contract, run against both backends (a SQLite file and a real PostgreSQL database):
versioned changes, audit, fires-once, deliveries."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot import config
from bot.domain import incidents
from bot.domain.deliveries import NOT_PLACED_YET, RATELIMITED, Delivery, Firing
from bot.domain.escalation import due_actions
from bot.domain.incidents import Incident
from bot.domain.records import AuditRecord, Event
from bot.store import Store

T0 = datetime(2026, 1, 25, 14, 32, tzinfo=UTC)
CONFIG = config.parse(config.default_config_text())


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def db_path(store_url: str) -> str:
    return store_url


@pytest.fixture
def store(db_path: str) -> Iterator[Store]:
    opened = Store(db_path)
    yield opened
    opened.close()


def draft(title: str = "Checkout returns 500", severity: str = "P1", by: str = "U0DECL") -> Incident:
    return incidents.declare(title=title, severity=severity, by=by, now=T0, channel="C0ANN")


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` on `count` threads released together; return results in thread order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait(timeout=5)
            results[i] = work(i)
        except BaseException as exc:  # reported on the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors
    return results


def decide_at(now: datetime) -> Callable[[Incident, frozenset[str]], list[Firing]]:
    return lambda incident, fired: due_actions(incident, CONFIG.policy(incident.severity), fired, now)


# -- incidents ------------------------------------------------------------------------------


def test_create_numbers_and_get_round_trips(store: Store) -> None:
    first = store.create_incident(draft("First"), T0)
    second = store.create_incident(draft("Second", severity="P3"), T0 + minutes(1))
    assert (first.number, second.number) == (1, 2)
    assert first == replace(draft("First"), number=1)
    assert store.get(1) == first
    assert store.get(2) == second
    assert store.get(3) is None
    assert store.get(1).declared_at == T0  # type: ignore[union-attr]
    assert store.count_incidents() == 2


def test_create_writes_a_timeline_line_and_an_audit_record(store: Store) -> None:
    inc = store.create_incident(draft("<!channel> & down"), T0)
    assert store.timeline(inc.number) == [
        Event(1, T0, "declare", "U0DECL", "<@U0DECL> declared INC-1 (P1): &lt;!channel&gt; &amp; down")
    ]
    assert store.audit_log(inc.number) == [
        AuditRecord(1, T0, "U0DECL", "declare", {"severity": "P1", "title": "<!channel> & down"})
    ]


def test_open_incidents_excludes_resolved(store: Store) -> None:
    one = store.create_incident(draft("one"), T0)
    two = store.create_incident(draft("two"), T0)
    three = store.create_incident(draft("three"), T0)
    change = incidents.resolve(two, by="U1", now=T0 + minutes(5), summary=None)
    assert change is not None
    assert store.apply(change, T0 + minutes(5), old=two) is not None
    assert [i.number for i in store.open_incidents()] == [one.number, three.number]


def test_by_war_room(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    store.create_incident(draft("other"), T0)
    saved = store.record_setup(inc.number, T0, war_room_id="C0WAR", war_room_name="inc-1-checkout-returns-500")
    assert saved.version == 1
    found = store.by_war_room("C0WAR")
    assert found is not None
    assert (found.number, found.war_room_name, found.version) == (
        1,
        "inc-1-checkout-returns-500",
        1,
    )
    assert store.by_war_room("C0NOPE") is None
    assert store.audit_log(1)[-1].detail == {
        "war_room_id": "C0WAR",
        "war_room_name": "inc-1-checkout-returns-500",
    }


# -- apply: optimistic versioning and audit ---------------------------------------------------


def test_apply_bumps_version_and_records_timeline_and_audit(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    at = T0 + minutes(3)
    change = incidents.acknowledge(inc, by="U0PRIMARY", now=at)
    assert change is not None
    saved = store.apply(change, at, old=inc)
    assert saved is not None
    assert saved.version == 1
    assert saved.acknowledged_at == at
    assert store.get(inc.number) == saved
    assert store.timeline(inc.number)[-1] == Event(1, at, "ack", "U0PRIMARY", "<@U0PRIMARY> acknowledged INC-1")
    assert store.audit_log(inc.number)[-1] == AuditRecord(
        1,
        at,
        "U0PRIMARY",
        "ack",
        {
            "acknowledged_at": {"from": None, "to": "2026-01-25T14:35:00+00:00"},
            "acknowledged_by": {"from": None, "to": "U0PRIMARY"},
        },
    )


def test_apply_with_a_stale_old_changes_nothing(store: Store) -> None:
    inc = store.create_incident(draft("T", severity="P2"), T0)
    first = incidents.acknowledge(inc, by="U0A", now=T0 + minutes(1))
    assert first is not None
    winner = store.apply(first, T0 + minutes(1), old=inc)
    assert winner is not None
    timeline_before = store.timeline(inc.number)
    audit_before = store.audit_log(inc.number)

    # A second click decided from the same (now stale) state.
    second = incidents.change_severity(inc, severity="P1", by="U0B")
    assert second is not None
    assert store.apply(second, T0 + minutes(2), old=inc) is None
    assert store.get(inc.number) == winner
    assert store.get(inc.number).severity == "P2"  # type: ignore[union-attr]
    assert store.timeline(inc.number) == timeline_before
    assert store.audit_log(inc.number) == audit_before

    # Re-read and retry: now it lands, on top of the winner.
    retried = incidents.change_severity(winner, severity="P1", by="U0B")
    assert retried is not None
    saved = store.apply(retried, T0 + minutes(2), old=winner)
    assert saved is not None
    assert (saved.version, saved.severity, saved.acknowledged_by) == (2, "P1", "U0A")
    assert store.audit_log(inc.number)[-1].detail == {"severity": {"from": "P2", "to": "P1"}}


def test_two_threads_applying_from_the_same_state_only_one_wins(store: Store) -> None:
    inc = store.create_incident(draft(), T0)

    def ack(i: int) -> Incident | None:
        change = incidents.acknowledge(inc, by=f"U{i}", now=T0 + minutes(1))
        assert change is not None
        return store.apply(change, T0 + minutes(1), old=inc)

    results = in_threads(8, ack)
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert store.get(inc.number) == winners[0]
    assert [e.kind for e in store.timeline(inc.number)] == ["declare", "ack"]


def test_timeline_is_in_time_order_whatever_the_insert_order(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    store.add_event(inc.number, T0 + minutes(10), "note", "U1", "ten")
    store.add_event(inc.number, T0 + minutes(2), "note", "U1", "two")
    # 14:37 in UTC written with a +02:00 offset sorts by the instant, not the text.
    plus_two = timezone(timedelta(hours=2))
    store.add_event(inc.number, datetime(2026, 1, 25, 16, 37, tzinfo=plus_two), "note", "U1", "five")
    store.add_event(inc.number, T0 + minutes(2), "note", "U2", "two again")
    timeline = store.timeline(inc.number)
    assert [e.text for e in timeline[1:]] == ["two", "two again", "five", "ten"]
    assert timeline[2].at == T0 + minutes(2)
    assert timeline[3].at == T0 + minutes(5)
    assert [a.action for a in store.audit_log(inc.number)] == [
        "declare",
        "note",
        "note",
        "note",
        "note",
    ]


def test_timelines_are_per_incident(store: Store) -> None:
    a = store.create_incident(draft("a"), T0)
    b = store.create_incident(draft("b"), T0)
    store.add_event(b.number, T0 + minutes(1), "note", "U1", "only b")
    assert [e.kind for e in store.timeline(a.number)] == ["declare"]
    assert [e.text for e in store.timeline(b.number)][-1] == "only b"


def test_twenty_threads_declaring_at_once_get_distinct_numbers(store: Store) -> None:
    results = in_threads(20, lambda i: store.create_incident(draft(f"incident {i}"), T0))
    assert sorted(r.number for r in results) == list(range(1, 21))
    for i, inc in enumerate(results):
        assert store.get(inc.number).title == f"incident {i}"  # type: ignore[union-attr]
    assert len(store.open_incidents()) == 20


# -- claim: each due key fires once -----------------------------------------------------------


def test_claim_records_firings_and_their_deliveries(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    firings = store.claim(inc.number, decide_at(T0), T0)
    assert [f.key for f in firings] == [
        "notify:vp_product",
        "notify:tech_lead",
        "page:oncall_primary",
    ]
    assert store.fired_keys(inc.number) == {
        "notify:vp_product",
        "notify:tech_lead",
        "page:oncall_primary",
    }
    rows = store.deliveries(inc.number)
    assert [(d.firing_key, d.kind, d.target, d.status, d.attempts) for d in rows] == [
        ("notify:vp_product", "fyi", "vp_product", "pending", 0),
        ("notify:tech_lead", "fyi", "tech_lead", "pending", 0),
        ("page:oncall_primary", "page", "oncall_primary", "pending", 0),
        ("page:oncall_primary", "paged_note", "oncall_primary", "pending", 0),
    ]
    assert rows[2].detail == "step 1 of the P1 escalation path"
    assert all(d.next_attempt_at == T0 for d in rows)
    assert store.claim(inc.number, decide_at(T0), T0) == []
    assert len(store.deliveries(inc.number)) == 4


def test_claim_of_unknown_incident_is_empty(store: Store) -> None:
    assert store.claim(99, decide_at(T0), T0) == []


def test_claim_from_eight_threads_records_once(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    results = in_threads(8, lambda i: store.claim(inc.number, decide_at(T0), T0))
    non_empty = [r for r in results if r]
    assert len(non_empty) == 1
    assert [f.key for f in non_empty[0]] == [
        "notify:vp_product",
        "notify:tech_lead",
        "page:oncall_primary",
    ]
    assert len(store.deliveries(inc.number)) == 4
    assert len(store.deliveries(inc.number, kind="page")) == 1
    fired_audits = [a for a in store.audit_log(inc.number) if a.action == "fired"]
    assert [a.detail for a in fired_audits] == [
        {"key": "notify:vp_product", "deliveries": 1},
        {"key": "notify:tech_lead", "deliveries": 1},
        {"key": "page:oncall_primary", "deliveries": 2},
    ]


def test_even_a_careless_decider_cannot_create_deliveries_twice(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    page = Firing("page:ceo", (Delivery("page", "ceo", "manual"),))
    in_threads(8, lambda i: store.claim(inc.number, lambda _inc, _fired: [page], T0))
    assert store.fired_keys(inc.number) == {"page:ceo"}
    assert [(d.kind, d.target) for d in store.deliveries(inc.number)] == [("page", "ceo")]


def test_claim_sees_an_ack_committed_before_it(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    store.claim(inc.number, decide_at(T0), T0)
    change = incidents.acknowledge(inc, by="U0PRIMARY", now=T0 + minutes(9))
    assert change is not None
    assert store.apply(change, T0 + minutes(9), old=inc) is not None
    assert store.claim(inc.number, decide_at(T0 + minutes(10)), T0 + minutes(10)) == []
    assert store.deliveries(inc.number, kind="page", status="pending")[0].target == ("oncall_primary")
    assert len(store.deliveries(inc.number, kind="page")) == 1


def test_record_firing_is_false_the_second_time(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    firing = Firing("page:U0X", (Delivery("page", "U0X", "paged by hand"),))
    assert store.record_firing(inc.number, firing, T0) is True
    assert store.record_firing(inc.number, firing, T0 + minutes(1)) is False
    assert len(store.deliveries(inc.number)) == 1


def test_a_firing_is_refused_while_one_with_its_prefix_is_recent(store: Store) -> None:
    inc = store.create_incident(draft(), T0)

    def page(n: int) -> Firing:
        return Firing(f"manual:U0CEO:{n}", (Delivery("page", "U0CEO", "by hand"),))

    assert store.record_firing_unless_recent(inc.number, page(1), T0, "manual:U0CEO:", minutes(5)) is None
    earlier = store.record_firing_unless_recent(inc.number, page(2), T0 + minutes(4), "manual:U0CEO:", minutes(5))
    assert earlier == T0
    other = Firing("manual:U0LEAD:1", (Delivery("page", "U0LEAD", "by hand"),))
    assert store.record_firing_unless_recent(inc.number, other, T0 + minutes(4), "manual:U0LEAD:", minutes(5)) is None
    assert store.record_firing_unless_recent(inc.number, page(3), T0 + minutes(5), "manual:U0CEO:", minutes(5)) is None
    assert len(store.deliveries(inc.number)) == 3
    # Ten at once record one.
    results = in_threads(
        10,
        lambda i: store.record_firing_unless_recent(
            inc.number, page(10 + i), T0 + minutes(20), "manual:U0CEO:", minutes(5)
        ),
    )
    assert results.count(None) == 1 and len(store.deliveries(inc.number)) == 4


# -- deliveries -------------------------------------------------------------------------------


@pytest.fixture
def claimed(store: Store) -> Incident:
    inc = store.create_incident(draft(), T0)
    store.claim(inc.number, decide_at(T0), T0)
    return inc


def test_due_deliveries_in_id_order_and_limited(store: Store, claimed: Incident) -> None:
    due = store.due_deliveries(T0)
    assert [d.id for d in due] == [1, 2, 3, 4]
    assert [d.id for d in store.due_deliveries(T0, limit=2)] == [1, 2]
    assert store.due_deliveries(T0 - timedelta(seconds=1)) == []
    assert store.next_delivery_at() == T0


def test_start_delivery_takes_it_out_of_the_due_list(store: Store, claimed: Incident) -> None:
    assert store.start_delivery(1, T0) is True
    assert store.start_delivery(1, T0) is False
    assert [d.id for d in store.due_deliveries(T0)] == [2, 3, 4]
    assert store.deliveries(claimed.number, status="sending")[0].id == 1


def test_only_one_of_two_concurrent_starters_wins(store: Store, claimed: Incident) -> None:
    for delivery_id in (1, 2, 3, 4):
        results = in_threads(2, lambda i, d=delivery_id: store.start_delivery(d, T0))
        assert sorted(results) == [False, True], delivery_id


def test_finish_delivery(store: Store, claimed: Incident) -> None:
    assert store.start_delivery(3, T0)
    store.finish_delivery(3, T0 + timedelta(seconds=2), user="U0PRIMARY", channel="D0DM", ts="17.1")
    done = store.deliveries(claimed.number, kind="page")[0]
    assert (done.status, done.attempts, done.user, done.channel, done.ts, done.last_error) == (
        "sent",
        1,
        "U0PRIMARY",
        "D0DM",
        "17.1",
        None,
    )
    assert 3 not in [d.id for d in store.due_deliveries(T0 + minutes(60))]


def test_retry_counts_attempts_and_respects_next_attempt_at(store: Store, claimed: Incident) -> None:
    assert store.start_delivery(3, T0)
    assert store.retry_delivery(3, "ratelimited", T0 + minutes(1)) == 1
    record = store.deliveries(claimed.number, kind="page")[0]
    assert (record.status, record.attempts, record.last_error) == ("pending", 1, "ratelimited")
    assert record.next_attempt_at == T0 + minutes(1)
    assert 3 not in [d.id for d in store.due_deliveries(T0 + timedelta(seconds=59))]
    assert 3 in [d.id for d in store.due_deliveries(T0 + minutes(1))]

    assert store.start_delivery(3, T0 + minutes(1))
    assert store.retry_delivery(3, "timeout", T0 + minutes(3)) == 2
    for other in (1, 2, 4):
        assert store.start_delivery(other, T0)
    assert store.next_delivery_at() == T0 + minutes(3)

    assert store.start_delivery(3, T0 + minutes(3))
    store.finish_delivery(3, T0 + minutes(3), user="U0PRIMARY", channel="D1", ts="1.2")
    final = store.deliveries(claimed.number, kind="page")[0]
    assert (final.status, final.attempts, final.last_error) == ("sent", 3, None)


def test_a_stale_copy_cannot_start_a_delivery_before_its_retry_is_due(store: Store, claimed: Incident) -> None:
    # Two copies of delivery 1 were queued; the first attempt fails and reschedules it.
    assert store.start_delivery(1, T0)
    store.retry_delivery(1, "ratelimited", T0 + minutes(1))
    assert store.start_delivery(1, T0 + timedelta(seconds=1)) is False  # the stale copy must wait
    assert store.start_delivery(1, T0 + minutes(1)) is True


def test_retry_unplaced_pulls_forward_only_what_waited_for_a_place(store: Store, claimed: Incident) -> None:
    for delivery_id in (1, 2, 3, 4):
        assert store.start_delivery(delivery_id, T0)
    store.retry_delivery(1, f"{NOT_PLACED_YET} the incident is not announced yet", T0 + minutes(1))
    store.retry_delivery(2, RATELIMITED, T0 + minutes(1))  # waiting out Slack's Retry-After
    store.retry_delivery(3, "status page rate limited (429)", T0 + minutes(1))
    store.defer_delivery(4, T0 + minutes(1))  # paced: not a failure, not counted
    assert store.deliveries(claimed.number)[3].attempts == 0

    assert store.retry_unplaced(claimed.number, T0 + timedelta(seconds=1)) == 1

    assert [d.id for d in store.due_deliveries(T0 + timedelta(seconds=1))] == [1]
    assert store.retry_unplaced(claimed.number + 1, T0) == 0


def test_sub_second_retry_times_compare_as_instants(store: Store, claimed: Incident) -> None:
    assert store.start_delivery(1, T0)
    store.retry_delivery(1, "blip", T0 + timedelta(milliseconds=500))
    assert 1 not in [d.id for d in store.due_deliveries(T0)]
    assert 1 not in [d.id for d in store.due_deliveries(T0 + timedelta(milliseconds=499))]
    assert 1 in [d.id for d in store.due_deliveries(T0 + timedelta(seconds=1))]


def test_claim_returns_only_what_it_recorded(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    page = Firing("page:ceo", (Delivery("page", "ceo", "manual"),))
    assert store.claim(inc.number, lambda _inc, _fired: [page], T0) == [page]
    assert store.claim(inc.number, lambda _inc, _fired: [page], T0) == []


def test_cancel_delivery(store: Store, claimed: Incident) -> None:
    store.cancel_delivery(4, "incident acknowledged")
    cancelled = store.deliveries(claimed.number, status="cancelled")
    assert [(d.id, d.last_error) for d in cancelled] == [(4, "incident acknowledged")]
    assert [d.id for d in store.due_deliveries(T0 + minutes(60))] == [1, 2, 3]


def test_interrupted_deliveries_are_found_and_resumed_one_by_one(store: Store, claimed: Incident) -> None:
    assert store.start_delivery(1, T0)
    assert store.start_delivery(2, T0)
    assert store.start_delivery(3, T0)
    store.set_delivery_channel(2, "D0PRIMARY", "U0PRIMARY")
    store.finish_delivery(3, T0, user=None, channel="C1", ts="1.1")
    interrupted = store.interrupted_deliveries()
    assert [(d.id, d.channel) for d in interrupted] == [(1, None), (2, "D0PRIMARY")]
    store.resume_delivery(1)
    store.resume_delivery(3)  # already sent: resuming must not un-send it
    assert [d.id for d in store.due_deliveries(T0)] == [1, 4]
    statuses = {d.id: d.status for d in store.deliveries(claimed.number)}
    assert statuses == {1: "pending", 2: "sending", 3: "sent", 4: "pending"}


def test_a_claimed_delivery_is_taken_over_only_after_its_sending_deadline(store: Store, claimed: Incident) -> None:
    deadline = T0 + timedelta(seconds=30)
    assert store.start_delivery(1, T0, holder="instance-a", until=deadline)
    assert store.delivery_claim(1) == ("instance-a", deadline)
    # While the deadline runs nobody else may take it (nor look it up in Slack): it is not
    # listed as interrupted, and the loop is told to look again when the deadline passes.
    assert store.interrupted_deliveries(T0 + timedelta(seconds=29)) == []
    assert store.take_over_delivery(1, T0 + timedelta(seconds=29), holder="instance-b", until=T0 + minutes(1)) is False
    assert store.next_delivery_at(excluding=[2, 3, 4]) == deadline
    # Past it, one instance takes it over, once.
    assert [d.id for d in store.interrupted_deliveries(deadline)] == [1]
    later = T0 + minutes(1)
    assert store.take_over_delivery(1, deadline, holder="instance-b", until=later) is True
    assert store.take_over_delivery(1, deadline, holder="instance-c", until=later) is False
    assert store.delivery_claim(1) == ("instance-b", later)
    # The first sender's late failure matches no claim of its own: it changes nothing.
    assert store.retry_delivery(1, "timeout", T0 + minutes(2), claim=deadline) == 0
    store.resume_delivery(1, claim=deadline)
    assert [d.status for d in store.deliveries(claimed.number) if d.id == 1] == ["sending"]
    # The holder of the claim can.
    assert store.retry_delivery(1, "timeout", later, claim=later) == 1
    assert [(d.status, d.next_attempt_at) for d in store.deliveries(claimed.number) if d.id == 1] == [
        ("pending", later)
    ]


# -- durability -----------------------------------------------------------------------------


def test_data_survives_closing_and_reopening(db_path: str) -> None:
    first = Store(db_path)
    inc = first.create_incident(draft(), T0)
    first.claim(inc.number, decide_at(T0), T0)
    change = incidents.acknowledge(inc, by="U0PRIMARY", now=T0 + minutes(2))
    assert change is not None
    saved = first.apply(change, T0 + minutes(2), old=inc)
    assert first.start_delivery(1, T0)
    first.close()

    again = Store(db_path)
    try:
        assert again.get(inc.number) == saved
        assert [e.kind for e in again.timeline(inc.number)] == ["declare", "ack"]
        assert again.fired_keys(inc.number) == {
            "notify:vp_product",
            "notify:tech_lead",
            "page:oncall_primary",
        }
        assert [d.id for d in again.interrupted_deliveries()] == [1]
        again.resume_delivery(1)
        assert len(again.due_deliveries(T0)) == 4
        nxt = again.create_incident(draft("next"), T0 + minutes(5))
        assert nxt.number == 2
        assert again.ping() is True
    finally:
        again.close()


def test_change_decides_again_on_a_conflict_and_reports_a_no_op(store: Store) -> None:
    inc = store.create_incident(draft(), T0)
    stale = inc
    other = incidents.acknowledge(inc, by="U0SECOND", now=T0 + minutes(1))
    assert other is not None
    store.apply(other, T0 + minutes(1), old=inc)  # someone else acked first

    decided_on: list[str | None] = []

    def ack(current: Incident):
        decided_on.append(current.acknowledged_by)
        return incidents.acknowledge(current, by="U0PRIMARY", now=T0 + minutes(2))

    change, current = store.change(stale, ack, T0 + minutes(2))
    assert change is None and current.acknowledged_by == "U0SECOND"
    assert decided_on == [None, "U0SECOND"]  # decided on the stale copy, then again on the fresh one
    assert [a.action for a in store.audit_log(inc.number)].count("ack") == 1


def test_an_incidents_set_up_is_claimed_by_one_instance_until_its_deadline(store: Store) -> None:
    if store.dialect == "sqlite":
        pytest.skip("one process per SQLite file: another holder's claim is a dead predecessor's")
    inc = store.create_incident(draft(), T0)
    until = T0 + minutes(2)
    assert store.claim_setup(inc.number, "instance-a", T0, until)
    assert store.claim_setup(inc.number, "instance-a", T0, until), "its holder may go on"
    assert not store.claim_setup(inc.number, "instance-b", T0 + minutes(1), T0 + minutes(3)), "two would both post"
    assert store.claim_setup(inc.number, "instance-b", until, T0 + minutes(4)), "a dead holder is taken over"
    assert not store.claim_setup(inc.number, "instance-a", until, T0 + minutes(4))
    store.release_setup(inc.number, "instance-a")  # not its claim any more: changes nothing
    assert not store.claim_setup(inc.number, "instance-a", until, T0 + minutes(4))
    store.release_setup(inc.number, "instance-b")
    assert store.claim_setup(inc.number, "instance-a", until, T0 + minutes(4))


def test_set_up_claims_past_their_deadline_are_listed_as_lapsed_until_released_or_dropped(store: Store) -> None:
    first, second = store.create_incident(draft(), T0), store.create_incident(draft(), T0)
    assert store.claim_setup(first.number, "instance-a", T0, T0 + minutes(1))
    assert store.claim_setup(second.number, "instance-a", T0, T0 + minutes(3))
    assert store.lapsed_setups(T0 + minutes(1) - timedelta(seconds=1)) == []
    assert store.lapsed_setups(T0 + minutes(1)) == [first.number]
    # Extended by its holder (a set-up still going): no longer lapsed.
    assert store.claim_setup(first.number, "instance-a", T0 + minutes(1), T0 + minutes(2))
    assert store.lapsed_setups(T0 + minutes(1)) == []
    store.drop_lapsed_setup(second.number, T0 + minutes(2))  # not lapsed yet: kept
    assert store.lapsed_setups(T0 + minutes(3)) == [first.number, second.number]
    store.drop_lapsed_setup(second.number, T0 + minutes(3))
    store.release_setup(first.number, "instance-a")
    assert store.lapsed_setups(T0 + minutes(5)) == []
