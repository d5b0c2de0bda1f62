"""The store contract, continued: the sections later features added (on-call overrides and
handoffs, pins, follow-ups, resolutions and drafts, refusals, post attempts, set-up facts), run
against both backends, so every method's SQL is proven in both dialects."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import incidents
from bot.domain.deliveries import Delivery, Firing
from bot.domain.incidents import Incident
from bot.domain.records import Resolution
from bot.store import Store

T0 = datetime(2026, 4, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store(store_url)
    yield opened
    opened.close()


@pytest.fixture
def incident(store: Store) -> Incident:
    draft = incidents.declare(title="Checkout down", severity="P1", by="U0DECL", now=T0, channel="C0ANN")
    return store.create_incident(draft, T0)


def test_overrides_are_added_recognised_replaced_and_cleared(store: Store) -> None:
    first, new = store.add_override("primary", "U0BOB", T0 + timedelta(hours=8), by="U0ALICE", now=T0)
    assert new and first.user == "U0BOB"
    again, new = store.add_override("primary", "U0BOB", T0 + timedelta(hours=8), by="U0ALICE", now=T0)
    assert not new and again.id == first.id, "a double submit is recognised"
    second, _ = store.add_override("primary", "U0CAROL", T0 + timedelta(hours=4), by="U0ALICE", now=T0)
    running = store.overrides("primary", ending_after=T0)
    assert [o.user for o in running] == ["U0CAROL"], "the new one replaced the old"
    cleared = store.clear_override("primary", by="U0ALICE", now=T0 + timedelta(hours=1))
    assert [o.id for o in cleared] == [second.id]
    assert store.clear_override("primary", by="U0ALICE", now=T0 + timedelta(hours=1)) == []
    assert [r.action for r in store.audit_log(None)] == ["oncall_override", "oncall_override", "oncall_override_clear"]


def test_a_handoff_is_claimed_once_and_its_notices_are_sent_until_done(store: Store) -> None:
    notices = [("in", "U0BOB", "You are on call"), ("out", "U0ALICE", "You are off call")]
    assert store.claim_handoff("primary", T0, notices, T0)
    assert not store.claim_handoff("primary", T0, notices, T0)
    pending = store.pending_handoff_notices()
    assert [(n.side, n.user) for n in pending] == [("in", "U0BOB"), ("out", "U0ALICE")]
    store.finish_handoff_notice(pending[0].id, T0)
    assert [n.user for n in store.pending_handoff_notices()] == ["U0ALICE"]


def test_pins_followups_resolution_and_draft(store: Store, incident: Incident) -> None:
    n = incident.number
    assert store.add_pinned(n, "C0ROOM", "1.0", T0 + timedelta(minutes=3), "U0ALICE", "rolled back", T0)
    assert not store.add_pinned(n, "C0ROOM", "1.0", T0, "U0ALICE", "rolled back", T0)
    followup = store.add_followup(n, T0, "U0ALICE", "add an alert", "follow-up: add an alert")
    assert [(f.id, f.text) for f in store.followups(n)] == [(followup, "add an alert")]
    details = Resolution("U0ALICE", "fixed", "a bad deploy", "checkout failed for 10 min")
    change, saved = store.resolve(
        incident,
        lambda cur: incidents.resolve(cur, by="U0ALICE", now=T0 + timedelta(hours=1), summary="fixed"),
        T0 + timedelta(hours=1),
        details,
        firings=lambda _: (Firing("postmortem:upload", (Delivery("postmortem", "C0ROOM"),)),),
    )
    assert change is not None and not saved.is_open
    assert store.resolution(n) == details
    assert "postmortem:upload" in store.fired_keys(n)
    assert store.resolved_since(T0, ("P1",)) == [n]
    store.save_draft(n, "# draft 1", T0)
    store.record_draft_upload(n, "F1", "https://slack/F1", "C0ROOM")
    store.save_draft(n, "# draft 2", T0 + timedelta(minutes=1))
    draft = store.draft(n)
    assert draft is not None and (draft.markdown, draft.file_id) == ("# draft 2", None)
    assert [e.kind for e in store.timeline(n)][:3] == ["declare", "followup", "pin"]  # the pin at its own time


def test_refusals_attempts_setup_and_pages_sent(store: Store, incident: Incident) -> None:
    n = incident.number
    store.record_refusal(T0, "U0MALLORY", "rollback", n, "/incident rollback")
    store.record_refusal(T0, "U0MALLORY", "oncall", None, "/incident oncall set")
    assert [r.actor for r in store.refusals(n)] == ["U0MALLORY"]
    assert [r.detail["action"] for r in store.refusals()] == ["oncall"]
    store.note_attempt("announce:1", "C0ANN", T0)
    store.note_attempt("announce:1", "C0OTHER", T0, thread_ts="9.9")
    attempt = store.attempt("announce:1")
    assert attempt is not None and (attempt.channel, attempt.thread_ts) == ("C0OTHER", "9.9")
    saved = store.record_setup(n, T0, announcement_channel="C0ANN", announcement_ts="1.1", war_room_id="C0ROOM")
    assert store.by_war_room("C0ROOM") == saved and store.known_announcement_channel() == "C0ANN"
    store.add_event(n, T0, "note", "U0ALICE", "looking at the logs")
    assert store.record_firing(n, Firing("page:0", (Delivery("page", "oncall_primary"),)), T0)
    [page] = store.deliveries(n, kind="page")
    assert store.delivery_backlog() == (1, T0)
    assert store.delivery_backlog(["page"]) == (1, T0)
    assert store.delivery_backlog(["post", "refresh"]) == (0, None)
    assert store.start_delivery(page.id, T0)
    store.set_delivery_channel(page.id, "D0PRIMARY", "U0PRIMARY")
    assert [d.id for d in store.interrupted_deliveries()] == [page.id]
    store.finish_delivery(page.id, T0 + timedelta(seconds=1), user="U0PRIMARY", channel="D0PRIMARY", ts="2.2")
    assert store.pages_sent(n) == [("U0PRIMARY", T0 + timedelta(seconds=1))]
    assert store.count_incidents() == 1 and store.incidents_since(T0) == [store.get(n)]
    assert store.record_firing(n, Firing("status:1", (Delivery("statuspage", "create"),)), T0)
    [call] = store.deliveries(n, kind="statuspage")
    assert store.drop_pending_delivery(call.id, "superseded")
    assert not store.drop_pending_delivery(call.id, "superseded")
