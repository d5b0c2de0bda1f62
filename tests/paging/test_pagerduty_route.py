"""The PagerDuty route's own rules, against a real store and a client that records instead of sending."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import config
from bot.domain import incidents, pagerduty
from bot.domain.deliveries import DeliveryKind
from bot.pagerduty.client import PagerDutyClient
from bot.paging import pagerduty as route
from bot.store import Store

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
CONFIG = config.parse(config.default_config_text() + "pagerduty: {severities: [P1, P2]}\n")


class Recording(PagerDutyClient):
    def __init__(self) -> None:
        super().__init__("R0TESTROUTINGKEY000000000000000", "http://127.0.0.1:9/v2/enqueue")
        self.sent: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> str:
        self.sent.append(event)
        return str(event["dedup_key"])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(str(tmp_path / "bot.db"))
    yield opened
    opened.close()


def test_a_trigger_due_after_its_incident_was_acknowledged_is_dropped_not_sent(store):
    """PagerDuty down at declare: the trigger retries; the incident is acknowledged in Slack meanwhile.
    If the trigger's retry comes due before the acknowledge's, it must not ring a phone late."""
    draft = incidents.declare(title="Checkout returns 500", severity="P1", by="U0ALICE", now=T0, channel="C0ANN")
    incident = store.create_incident(draft, T0, tuple(pagerduty.on_declare(CONFIG.pagerduty, draft)))
    for firing in pagerduty.on_acknowledge(CONFIG.pagerduty, incident):
        store.record_firing(incident.number, firing, T0)
    client = Recording()
    send = route.routes(CONFIG, store, None, client, lambda: T0)[DeliveryKind.PAGERDUTY].send  # type: ignore[arg-type]
    trigger, links, ack = store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY)
    assert (trigger.target, links.target, ack.target) == ("trigger", "links", "acknowledge")

    send(trigger, incident)
    assert client.sent == []
    [dropped] = [d for d in store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY) if d.id == trigger.id]
    assert dropped.status == "cancelled" and "superseded by the acknowledge" in (dropped.last_error or "")


def test_a_trigger_with_nothing_after_it_is_sent(store):
    draft = incidents.declare(title="Checkout returns 500", severity="P1", by="U0ALICE", now=T0, channel="C0ANN")
    incident = store.create_incident(draft, T0, tuple(pagerduty.on_declare(CONFIG.pagerduty, draft)))
    client = Recording()
    send = route.routes(CONFIG, store, None, client, lambda: T0)[DeliveryKind.PAGERDUTY].send  # type: ignore[arg-type]
    trigger = store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY)[0]
    send(trigger, incident)
    assert [e["event_action"] for e in client.sent] == ["trigger"]
    assert store.deliveries(incident.number, kind=DeliveryKind.PAGERDUTY)[0].status == "sent"
