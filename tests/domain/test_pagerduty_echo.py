"""Which `incident.resolved` from PagerDuty is the echo of the bot's own resolve: pure."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.pagerduty import resolved_by_us
from bot.domain.records import DeliveryRecord

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def event(number: int, target: str, status: str = "sent") -> DeliveryRecord:
    return DeliveryRecord(
        id=number,
        incident=7,
        firing_key=f"pagerduty:{target}:{number}",
        kind="pagerduty",
        target=target,
        detail="",
        status=status,
        attempts=1,
        next_attempt_at=T0,
        last_error=None,
        user=None,
        channel=None,
        ts=None,
    )


def test_the_newest_live_event_a_resolve_is_ours():
    assert resolved_by_us([event(1, "trigger"), event(2, "links", "cancelled"), event(3, "resolve")])
    assert resolved_by_us([event(1, "trigger"), event(3, "resolve", "sending")])  # the webhook beat the 202
    assert resolved_by_us([event(4, "resolve", "pending"), event(1, "trigger")])  # newest by id, not by order


def test_a_trigger_after_it_or_no_resolve_at_all_is_someone_else():
    assert not resolved_by_us([])
    assert not resolved_by_us([event(1, "trigger"), event(2, "links")])
    assert not resolved_by_us([event(1, "trigger"), event(2, "resolve"), event(3, "trigger")])  # raised again
    assert not resolved_by_us([event(1, "trigger"), event(2, "acknowledge")])
    # A resolve PagerDuty refused (400, cancelled) resolved nothing there.
    assert not resolved_by_us([event(1, "trigger"), event(2, "resolve", "cancelled")])
