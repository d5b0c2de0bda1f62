"""The store's side of re-fires, on SQLite and PostgreSQL: a group firing again soon after its
incident's resolution is recorded as that incident's re-fire, with its message owed (a delivery
in the same transaction); a reopen attaches it and owes the message's edit."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.domain import incidents
from bot.domain.deliveries import DeliveryKind
from bot.domain.policy import AlertRoute
from bot.store import Store
from tests.store.test_alert_store import DECLARE, T0, alert

WINDOW = timedelta(minutes=30)


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.close()


def resolved_incident(store: Store, route: AlertRoute = DECLARE) -> int:
    """INC-n declared for the first alert of group p/Error rate, the alert closed, INC-n resolved at T0+5m."""
    record = store.record_alerts([(alert(alert_id="0.first"), route)], T0, WINDOW)[0].record
    draft = incidents.declare(title="Error rate", severity="P1", by="U0BOT", now=T0, channel="c", detected_at=T0)
    incident = store.create_incident(draft, T0, alerts=(record.id,))
    store.record_alerts([(alert("closed", alert_id="0.first"), route)], T0 + timedelta(minutes=4), WINDOW)
    at = T0 + timedelta(minutes=5)
    store.change(incident, lambda current: incidents.resolve(current, by="U0A", now=at, summary="fixed"), at)
    return incident.number


def refire_deliveries(store: Store, number: int) -> list:
    return store.deliveries(number, DeliveryKind.ALERT_REFIRE)


def test_a_group_firing_again_within_the_window_is_a_re_fire_with_its_message_owed(store):
    number = resolved_incident(store)
    at = T0 + timedelta(minutes=10)
    [receipt] = store.record_alerts([(alert(alert_id="0.second", started=at), DECLARE)], at, WINDOW)

    assert receipt.outcome == "refire" and receipt.record.refire_of == number and receipt.record.incident is None
    assert receipt.record.id not in [a.id for a in store.unsettled_alerts()]  # nothing to declare
    [owed] = refire_deliveries(store, number)
    assert owed.target.startswith(f"alert-refire:{number}:") and owed.status == "pending"
    # A re-send while firing owes one more (an edit of the same message); so does the closing.
    assert store.record_alerts([(alert(alert_id="0.second", started=at), DECLARE)], at, WINDOW)[0].outcome == "refire"
    store.record_alerts([(alert("closed", alert_id="0.second", started=at), DECLARE)], at, WINDOW)
    assert {d.target for d in refire_deliveries(store, number)} == {owed.target}
    assert len(refire_deliveries(store, number)) == 3
    group = {"source": receipt.record.source, "group_key": receipt.record.group_key, "alert_id": "0.second"}
    [listed] = store.refire_alerts(number, owed.target, group, None)
    assert listed.notifications == 2 and not listed.is_open


def test_after_the_window_it_is_new_and_a_re_fire_still_firing_then_becomes_new(store):
    resolved_incident(store)
    inside = T0 + timedelta(minutes=20)
    assert store.record_alerts([(alert(alert_id="0.second", started=inside), DECLARE)], inside, WINDOW)[0].outcome == (
        "refire"
    )
    after = T0 + timedelta(minutes=36)  # resolved at T0+5m: the window ended at T0+35m
    [late] = store.record_alerts([(alert(alert_id="0.second", started=inside), DECLARE)], after, WINDOW)
    assert late.outcome == "new" and late.record.refire_of is None
    assert late.record.id in [a.id for a in store.unsettled_alerts()]  # to be declared now
    [fresh] = store.record_alerts([(alert(alert_id="0.third", started=after), DECLARE)], after, WINDOW)
    assert fresh.outcome == "new" and fresh.record.refire_of is None
    assert (
        store.record_alerts([(alert(alert_id="0.fourth", started=after), DECLARE)], after, timedelta(0))[0].outcome
        == "new"
    )


def test_0s_turns_re_fires_off(store):
    resolved_incident(store)
    at = T0 + timedelta(minutes=6)
    assert store.record_alerts([(alert(alert_id="0.second", started=at), DECLARE)], at, timedelta(0))[0].outcome == (
        "new"
    )


def test_a_reopen_attaches_the_re_fires_still_firing_and_owes_their_messages_edit(store):
    number = resolved_incident(store)
    at = T0 + timedelta(minutes=10)
    store.record_alerts([(alert(alert_id="0.second", started=at), DECLARE)], at, WINDOW)
    before = len(refire_deliveries(store, number))
    reopen_at = T0 + timedelta(minutes=12)
    current = store.get(number)
    _, saved = store.change(
        current,
        lambda c: incidents.reopen(c, by="U0A", now=reopen_at, reason=None),
        reopen_at,
        also=store.refires_writer(reopen_at),
    )

    assert saved.is_open
    assert [a.incident for a in store.alerts_of(number)] == [number, number]
    assert len(refire_deliveries(store, number)) == before + 1  # the message, edited to "reopened"
    # A later alert of the group joins the reopened incident.
    later = T0 + timedelta(minutes=13)
    [receipt] = store.record_alerts([(alert(alert_id="0.third", started=later), DECLARE)], later, WINDOW)
    assert receipt.outcome == "attached" and receipt.record.incident == number


def test_an_alert_of_a_group_whose_incident_is_open_joins_it_though_its_alerts_closed(store):
    record = store.record_alerts([(alert(alert_id="0.first"), DECLARE)], T0, WINDOW)[0].record
    draft = incidents.declare(title="Error rate", severity="P1", by="U0BOT", now=T0, channel="c", detected_at=T0)
    incident = store.create_incident(draft, T0, alerts=(record.id,))
    store.record_alerts([(alert("closed", alert_id="0.first"), DECLARE)], T0 + timedelta(minutes=1), WINDOW)
    at = T0 + timedelta(minutes=2)
    [receipt] = store.record_alerts([(alert(alert_id="0.second", started=at), DECLARE)], at, WINDOW)
    assert receipt.outcome == "attached" and receipt.record.incident == incident.number
