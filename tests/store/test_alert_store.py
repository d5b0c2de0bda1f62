"""The store's side of alerts: one open row per alert, and one incident per alert, even racing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.alerts import CLOUD_MONITORING, Alert
from bot.domain.incidents import declare
from bot.domain.policy import AlertRoute
from bot.store import AlertTaken, Store

T0 = datetime(2026, 11, 29, 14, 2, tzinfo=UTC)
DECLARE = AlertRoute("P1", "declare")


@pytest.fixture
def store(store_url: str):
    s = Store(store_url)
    yield s
    s.close()


def alert(state: str = "open", alert_id: str = "0.abc", started: datetime = T0, group: str = "p/Error rate") -> Alert:
    ended = started + timedelta(minutes=30) if state == "closed" else None
    return Alert(CLOUD_MONITORING, alert_id, "Error rate", state, started, ended, "12% errors", group_key=group)


def outcome(store: Store, a: Alert, route: AlertRoute = DECLARE, now: datetime = T0) -> str:
    return store.record_alerts([(a, route)], now)[0].outcome


def test_an_alert_is_new_once_then_repeats_then_closes(store):
    assert outcome(store, alert()) == "new"
    assert outcome(store, alert()) == "repeat"
    assert outcome(store, alert("closed")) == "closed"
    assert outcome(store, alert("closed")) == "stale"
    assert outcome(store, alert()) == "stale"  # a late copy of the firing that closed
    record = store.alert(1)
    assert record.notifications == 2 and record.closed_at == T0 and record.ended_at == T0 + timedelta(minutes=30)


def test_the_same_alert_firing_again_after_it_closed_is_a_new_episode(store):
    outcome(store, alert())
    outcome(store, alert("closed"))
    assert outcome(store, alert(started=T0 + timedelta(hours=1))) == "new"


def test_a_closing_for_an_alert_never_seen_open_is_stale(store):
    assert outcome(store, alert("closed")) == "stale"
    assert store.unsettled_alerts() == []


def test_concurrent_deliveries_of_one_alert_make_one_row(store):
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(outcome(store, alert()))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["new"] + ["repeat"] * 7


def test_an_alert_gets_one_incident_and_a_second_declare_stores_nothing(store):
    record = store.record_alerts([(alert(started=T0 - timedelta(minutes=2)), DECLARE)], T0)[0].record
    assert record is not None
    draft = declare(title="Error rate", severity="P1", by="U0BOT", now=T0, channel="c", detected_at=T0)
    first = store.create_incident(draft, T0, alerts=(record.id,))

    with pytest.raises(AlertTaken) as taken:
        store.create_incident(draft, T0, alerts=(record.id,))
    assert taken.value.incident == first.number
    assert store.count_incidents() == 1
    assert [a.id for a in store.alerts_of(first.number)] == [record.id]
    assert [e.kind for e in store.timeline(first.number)] == ["alert", "declare"]  # the alert came first


def test_an_alert_of_a_group_with_an_open_incident_is_attached_to_it(store):
    record = store.record_alerts([(alert(), DECLARE)], T0)[0].record
    assert record is not None
    incident = store.create_incident(
        declare(title="t", severity="P1", by="U0BOT", now=T0, channel="c"), T0, alerts=(record.id,)
    )
    receipt = store.record_alerts([(alert(alert_id="0.other"), AlertRoute("P2", "propose"))], T0)[0]
    assert receipt.outcome == "attached" and receipt.record and receipt.record.incident == incident.number
    ignored = store.record_alerts([(alert(alert_id="0.third"), AlertRoute("P2", "ignore"))], T0)[0]
    assert ignored.outcome == "new" and ignored.record and ignored.record.incident is None


def test_dismiss_is_once_and_never_after_a_declare(store):
    record = store.record_alerts([(alert(), AlertRoute("P2", "propose"))], T0)[0].record
    assert record is not None
    assert store.dismiss_alert(record.id, "U0ALICE")[0] is True
    done, current = store.dismiss_alert(record.id, "U0BOB")
    assert done is False and current and current.dismissed_by == "U0ALICE"


def test_an_older_database_gets_the_alerts_table_and_detected_at(tmp_path):
    path = str(tmp_path / "old.db")
    Store(path).close()
    again = Store(path)
    assert "detected_at" in again.db.table("incidents").columns_dict
    assert again.db.table("alerts").exists()
    again.close()
