"""The store contract for issue 23's parts, on both backends: war-room greetings claimed once,
the App Home's pages still waiting, the catch-up's proposals, and the daily readiness check's
claims and problems."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import incidents
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.readiness import Problem
from bot.store import Store

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    yield opened
    opened.close()


def test_a_greeting_is_claimed_once_released_and_the_set_up_claims_its_own(store: Store) -> None:
    assert store.claim_greeting(1, "U0BOB", T0)
    assert not store.claim_greeting(1, "U0BOB", T0), "a second join, a retried event"
    assert store.claim_greeting(2, "U0BOB", T0), "once per person per incident"
    store.release_greeting(1, "U0BOB")
    assert store.claim_greeting(1, "U0BOB", T0), "a greeting Slack refused may be tried again"
    store.claim_greetings(1, ["U0ALICE", "U0ALICE", "U0BOB"], T0)
    assert not store.claim_greeting(1, "U0ALICE", T0)
    assert sorted(store.greeted(1)) == ["U0ALICE", "U0BOB"]


def test_pages_waiting_are_the_sent_pages_of_open_unacknowledged_incidents(store: Store) -> None:
    draft = incidents.declare(title="Checkout down", severity="P1", by="U0DECL", now=T0, channel="C0ANN")
    incident = store.create_incident(draft, T0)
    page = Firing("page:oncall_primary", (Delivery(DeliveryKind.PAGE, "oncall_primary", "step 1"),))
    assert store.record_firing(incident.number, page, T0)
    [delivery] = store.deliveries(incident.number, kind=DeliveryKind.PAGE)
    assert store.pages_waiting("U0PRIMARY") == [], "not sent yet"
    assert store.start_delivery(delivery.id, T0)
    store.finish_delivery(delivery.id, T0 + timedelta(seconds=2), user="U0PRIMARY", channel="D0PRIMARY", ts="1.0")
    assert store.pages_waiting("U0PRIMARY") == [(incident.number, T0 + timedelta(seconds=2))]
    assert store.pages_waiting("U0SECOND") == []
    current = store.get(incident.number)
    assert current is not None
    store.change(current, lambda i: incidents.acknowledge(i, by="U0PRIMARY", now=T0 + timedelta(minutes=1)), T0)
    assert store.pages_waiting("U0PRIMARY") == [], "acknowledged: no button left to press"
    assert store.incident_proposals(incident.number) == []


def test_a_readiness_day_is_claimed_once_and_a_problem_reported_until_it_changes(store: Store) -> None:
    a, b = Problem("gap:primary:x", "A"), Problem("person:U0BOB:y", "B")

    def compose(new: list[Problem], standing: int) -> str:
        return f"{[p.key for p in new]} +{standing}"

    assert store.claim_oncall_check("2026-12-02", [a], compose, "incident-response", T0)
    assert not store.claim_oncall_check("2026-12-02", [a, b], compose, "incident-response", T0)
    assert store.pending_oncall_posts() == [("2026-12-02", "incident-response", "['gap:primary:x'] +0")]
    store.finish_oncall_post("2026-12-02", T0)
    assert store.pending_oncall_posts() == []

    assert store.claim_oncall_check("2026-12-03", [a], compose, "incident-response", T0), "unchanged: no post"
    assert store.pending_oncall_posts() == []
    assert store.claim_oncall_check("2026-12-04", [a, b], compose, "incident-response", T0)
    assert store.pending_oncall_posts() == [("2026-12-04", "incident-response", "['person:U0BOB:y'] +1")]
    store.finish_oncall_post("2026-12-04", T0)
    assert store.claim_oncall_check("2026-12-05", [b], compose, "incident-response", T0), "a went away"
    assert store.reported_problems() == ["person:U0BOB:y"]
    assert store.claim_oncall_check("2026-12-06", [a, b], compose, "incident-response", T0)
    assert store.pending_oncall_posts() == [("2026-12-06", "incident-response", "['gap:primary:x'] +1")], "came back"
    assert store.oncall_check_claimed("2026-12-06") and not store.oncall_check_claimed("2026-12-07")
