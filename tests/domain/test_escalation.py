"""bot/escalation.py with the runbook's policies: what is due when, and never twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot import config
from bot.domain import incidents
from bot.domain.deliveries import Delivery, Firing
from bot.domain.escalation import due_actions, missed_at_declare, next_due
from bot.domain.incidents import Incident

T0 = datetime(2026, 1, 25, 14, 32, tzinfo=UTC)
CONFIG = config.parse(config.default_config_text(), source="built-in default")
SECOND = timedelta(seconds=1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def declared(severity: str) -> Incident:
    draft = incidents.declare(title="Checkout returns 500", severity=severity, by="U0DECLARER", now=T0, channel="C1")
    return replace(draft, number=7)


def acked(incident: Incident, at: datetime) -> Incident:
    change = incidents.acknowledge(incident, by="U0PRIMARY", now=at)
    assert change is not None
    return change.incident


def paging_policy(severity: str):
    """The severity's policy without update reminders or the fix clock: paging on its own.
    Reminders and the fix clock have their own tests in tests/test_reminders.py."""
    return replace(CONFIG.policy(severity), update_every=None, fix_within=None)


def due(incident: Incident, fired: set[str] | frozenset[str], now: datetime) -> list[str]:
    return [f.key for f in due_actions(incident, paging_policy(incident.severity), frozenset(fired), now)]


def when(incident: Incident, fired: set[str] | frozenset[str], now: datetime) -> datetime | None:
    return next_due(incident, paging_policy(incident.severity), frozenset(fired), now)


def run(incident: Incident, fired: set[str], now: datetime) -> list[str]:
    """What a timer tick at `now` fires; records the keys in `fired` like Store.claim does."""
    keys = due(incident, fired, now)
    fired.update(keys)
    return keys


# -- each severity's path, step by step -------------------------------------------------------

# (offset from T0, keys that fire at that moment, next_due afterwards)
PATHS = {
    "P1": [
        (minutes(0), ["notify:vp_product", "notify:tech_lead", "page:oncall_primary"], minutes(5)),
        (minutes(5) - SECOND, [], minutes(5)),
        (minutes(5), ["sla:ack"], minutes(10)),
        (minutes(10) - SECOND, [], minutes(10)),
        (minutes(10), ["page:oncall_secondary"], minutes(20)),
        (minutes(20) - SECOND, [], minutes(20)),
        (minutes(20), ["page:vp_product"], minutes(30)),
        (minutes(30) - SECOND, [], minutes(30)),
        (minutes(30), ["page:ceo"], None),
        (timedelta(days=3), [], None),
    ],
    "P2": [
        (minutes(0), ["notify:vp_product", "page:oncall_primary"], minutes(10)),
        (minutes(10) - SECOND, [], minutes(10)),
        (minutes(10), ["page:oncall_secondary"], minutes(15)),
        (minutes(15) - SECOND, [], minutes(15)),
        (minutes(15), ["sla:ack"], minutes(30)),
        (minutes(30) - SECOND, [], minutes(30)),
        (minutes(30), ["page:vp_product"], None),
        (timedelta(days=3), [], None),
    ],
    "P3": [
        (minutes(0), ["page:support"], minutes(60)),
        (minutes(60) - SECOND, [], minutes(60)),
        (minutes(60), ["sla:ack"], None),
        (timedelta(days=3), [], None),
    ],
    "P4": [
        (minutes(0), ["page:support"], timedelta(days=1)),
        (timedelta(days=1) - SECOND, [], timedelta(days=1)),
        (timedelta(days=1), ["sla:ack"], None),
        (timedelta(days=3), [], None),
    ],
}


@pytest.mark.parametrize("severity", sorted(PATHS))
def test_escalation_path_step_by_step(severity: str) -> None:
    incident = declared(severity)
    fired: set[str] = set()
    for offset, expected, then in PATHS[severity]:
        now = T0 + offset
        assert run(incident, fired, now) == expected, f"{severity} at T0+{offset}"
        expected_next = None if then is None else T0 + then
        assert when(incident, fired, now) == expected_next, f"{severity} next after T0+{offset}"


def test_p1_at_declaration_exact_firings() -> None:
    firings = due_actions(declared("P1"), CONFIG.policy("P1"), frozenset(), T0)
    detail = "step 1 of the P1 escalation path"
    assert firings == [
        Firing("notify:vp_product", (Delivery("fyi", "vp_product"),)),
        Firing("notify:tech_lead", (Delivery("fyi", "tech_lead"),)),
        Firing(
            "page:oncall_primary",
            (
                Delivery("page", "oncall_primary", detail),
                Delivery("paged_note", "oncall_primary", detail),
            ),
        ),
    ]


def test_secondary_page_names_its_step() -> None:
    fired = {"notify:vp_product", "notify:tech_lead", "page:oncall_primary", "sla:ack"}
    firings = due_actions(declared("P1"), CONFIG.policy("P1"), frozenset(fired), T0 + minutes(10))
    assert firings == [
        Firing(
            "page:oncall_secondary",
            (
                Delivery("page", "oncall_secondary", "step 2 of the P1 escalation path"),
                Delivery("paged_note", "oncall_secondary", "step 2 of the P1 escalation path"),
            ),
        )
    ]


def test_sla_breach_delivery_says_the_sla() -> None:
    fired = {"notify:vp_product", "notify:tech_lead", "page:oncall_primary"}
    firings = due_actions(declared("P1"), CONFIG.policy("P1"), frozenset(fired), T0 + minutes(5))
    assert firings == [Firing("sla:ack", (Delivery("sla_breach", "incident", "5m"),))]


def test_next_due_is_now_while_something_is_due() -> None:
    assert when(declared("P1"), set(), T0) == T0
    assert when(declared("P1"), set(), T0 + minutes(7)) == T0 + minutes(7)


def test_a_bot_that_was_down_catches_up_once_in_order() -> None:
    incident = declared("P1")
    fired: set[str] = set()
    assert run(incident, fired, T0 + minutes(25)) == [
        "notify:vp_product",
        "notify:tech_lead",
        "page:oncall_primary",
        "page:oncall_secondary",
        "page:vp_product",
        "sla:ack",
    ]
    assert run(incident, fired, T0 + minutes(25)) == []
    assert when(incident, fired, T0 + minutes(25)) == T0 + minutes(30)


# -- fired keys are never due again ----------------------------------------------------------


@pytest.mark.parametrize("severity", ["P1", "P2", "P3", "P4"])
def test_nothing_fired_is_due_again(severity: str) -> None:
    incident = declared(severity)
    everything = set(due(incident, set(), T0 + timedelta(days=2)))
    assert "sla:ack" in everything
    for offset in (minutes(0), minutes(10), minutes(45), timedelta(days=2), timedelta(days=30)):
        assert due(incident, everything, T0 + offset) == []
        assert when(incident, everything, T0 + offset) is None


def test_one_fired_key_suppresses_only_itself() -> None:
    assert due(declared("P1"), {"page:oncall_primary"}, T0) == [
        "notify:vp_product",
        "notify:tech_lead",
    ]


# -- acknowledgement --------------------------------------------------------------------------


def test_ack_before_a_step_stops_further_pages() -> None:
    incident = declared("P1")
    fired: set[str] = set()
    run(incident, fired, T0)
    before = set(fired)
    incident = acked(incident, T0 + minutes(3))
    for offset in (minutes(3), minutes(5), minutes(10), minutes(20), minutes(30), minutes(90)):
        assert due(incident, fired, T0 + offset) == [], offset
    assert when(incident, fired, T0 + minutes(3)) is None
    assert fired == before  # nothing is taken back: the primary was paged and stays paged
    assert "page:oncall_primary" in fired


def test_ack_after_a_step() -> None:
    incident = declared("P1")
    fired: set[str] = set()
    for offset in (minutes(0), minutes(5), minutes(10)):
        run(incident, fired, T0 + offset)
    assert fired == {
        "notify:vp_product",
        "notify:tech_lead",
        "page:oncall_primary",
        "sla:ack",
        "page:oncall_secondary",
    }
    incident = acked(incident, T0 + minutes(12))
    assert due(incident, fired, T0 + minutes(20)) == []
    assert due(incident, fired, T0 + minutes(30)) == []
    assert when(incident, fired, T0 + minutes(12)) is None


def test_sla_ack_is_not_due_after_an_ack() -> None:
    incident = acked(declared("P2"), T0 + minutes(14))
    fired = {"notify:vp_product", "page:oncall_primary", "page:oncall_secondary"}
    assert due(incident, fired, T0 + minutes(15)) == []
    assert due(incident, fired, T0 + minutes(16)) == []


def test_sla_ack_due_exactly_at_ack_within_when_unacknowledged() -> None:
    incident = declared("P2")
    fired = {"notify:vp_product", "page:oncall_primary", "page:oncall_secondary"}
    assert due(incident, fired, T0 + minutes(15) - SECOND) == []
    assert due(incident, fired, T0 + minutes(15)) == ["sla:ack"]


def test_notify_still_goes_out_after_an_early_ack_but_no_page() -> None:
    incident = acked(declared("P1"), T0)
    assert due(incident, set(), T0 + minutes(1)) == ["notify:vp_product", "notify:tech_lead"]
    assert when(incident, set(), T0 + minutes(1)) == T0 + minutes(1)
    assert when(incident, {"notify:vp_product", "notify:tech_lead"}, T0 + minutes(1)) is None


# -- resolved ---------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", ["P1", "P2", "P3", "P4"])
def test_resolved_incident_has_nothing_due(severity: str) -> None:
    change = incidents.resolve(declared(severity), by="U1", now=T0 + minutes(1), summary=None)
    assert change is not None
    for offset in (minutes(0), minutes(10), timedelta(days=2)):
        assert due(change.incident, set(), T0 + offset) == []
        assert when(change.incident, set(), T0 + offset) is None


# -- severity changes -------------------------------------------------------------------------


def raised(incident: Incident, to: str) -> Incident:
    change = incidents.change_severity(incident, severity=to, by="U0LEAD")
    assert change is not None
    return change.incident


def test_raise_p2_to_p1_follows_p1_path_without_repeating_p2_pages() -> None:
    incident = declared("P2")
    fired: set[str] = set()
    assert run(incident, fired, T0) == ["notify:vp_product", "page:oncall_primary"]
    incident = raised(incident, "P1")
    now = T0 + minutes(15)
    assert run(incident, fired, now) == [
        "notify:tech_lead",
        "page:oncall_secondary",
        "sla:ack",
    ]
    assert when(incident, fired, now) == T0 + minutes(20)
    assert run(incident, fired, T0 + minutes(20)) == ["page:vp_product"]
    assert run(incident, fired, T0 + minutes(30)) == ["page:ceo"]


def test_raise_p2_to_p1_after_p2_paged_the_secondary() -> None:
    incident = declared("P2")
    fired: set[str] = set()
    run(incident, fired, T0)
    run(incident, fired, T0 + minutes(10))
    assert "page:oncall_secondary" in fired
    incident = raised(incident, "P1")
    assert run(incident, fired, T0 + minutes(12)) == ["notify:tech_lead", "sla:ack"]
    assert when(incident, fired, T0 + minutes(12)) == T0 + minutes(20)


def test_lower_p1_to_p3_never_repages_and_follows_p3() -> None:
    incident = declared("P1")
    fired: set[str] = set()
    run(incident, fired, T0)
    paged_under_p1 = set(fired)
    incident = raised(incident, "P3")
    now = T0 + minutes(3)
    newly = run(incident, fired, now)
    assert not set(newly) & paged_under_p1
    # P3's own first step (support) is the only thing the new path adds.
    assert newly == ["page:support"]
    # P3's ack SLA (1h), not P1's 5m or its 10/20/30m steps, is what comes next.
    assert when(incident, fired, now) == T0 + minutes(60)
    for offset in (minutes(5), minutes(10), minutes(20), minutes(30)):
        assert due(incident, fired, T0 + offset) == [], offset
    assert run(incident, fired, T0 + minutes(60)) == ["sla:ack"]
    assert when(incident, fired, T0 + minutes(60)) is None


def test_lower_p1_to_p3_after_the_p1_sla_breach_leaves_nothing_pending() -> None:
    incident = declared("P1")
    fired: set[str] = set()
    for offset in (minutes(0), minutes(5), minutes(10)):
        run(incident, fired, T0 + offset)
    incident = raised(incident, "P3")
    assert run(incident, fired, T0 + minutes(11)) == ["page:support"]
    assert when(incident, fired, T0 + minutes(11)) is None
    assert due(incident, fired, T0 + timedelta(days=1)) == []


# -- a declare already past its ack target ------------------------------------------------------


def test_a_declare_past_its_ack_target_pages_but_warns_of_no_breach() -> None:
    # P1's ack target is 5 min; the alert fired 20 min before the declare. The first page goes
    # now; a breach warning beside it would say "paged so far: nobody" while the page is going.
    incident = replace(declared("P1"), detected_at=T0 - minutes(20))
    policy = paging_policy("P1")
    assert missed_at_declare(incident, policy) == minutes(20)
    assert "sla:ack" not in due(incident, set(), T0)
    assert due(incident, set(), T0) == ["notify:vp_product", "notify:tech_lead", "page:oncall_primary"]
    assert "sla:ack" not in due(incident, set(), T0 + minutes(45))


def test_a_declare_within_its_ack_target_still_warns_from_detection() -> None:
    incident = replace(declared("P1"), detected_at=T0 - minutes(2))
    assert missed_at_declare(incident, paging_policy("P1")) is None
    started = {"notify:vp_product", "notify:tech_lead", "page:oncall_primary"}
    assert when(incident, started, T0) == T0 + minutes(3)  # 5 min from detection
    assert due(incident, started, T0 + minutes(3)) == ["sla:ack"]
