"""The catch-up as a pure function of store records and `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import config
from bot.domain import catchup
from bot.domain.incidents import Incident
from bot.domain.proposals import Proposal, ProposalKind, ProposalStatus
from bot.domain.records import Event, EventKind, FollowUp

DEFAULT = config.parse(config.default_config_text(), "default")
T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
INC = Incident(
    number=7,
    title="Checkout <!channel> down",
    severity="P1",
    status="identified",
    commander="U0ALICE",
    declared_by="U0ALICE",
    declared_at=T0,
)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def facts(incident: Incident = INC, events=(), followups=(), proposals=(), fired=frozenset()) -> catchup.Facts:
    return catchup.Facts(incident, list(events), list(followups), list(proposals), frozenset(fired))


def event(kind: EventKind, at: datetime, text: str, actor: str = "U0ALICE") -> Event:
    return Event(7, at, kind, actor, text)


def test_an_unacknowledged_incident_says_so_and_names_the_next_escalation_step():
    text = catchup.text(DEFAULT, facts(fired={"page:oncall_primary", "notify:vp_product"}), T0 + minutes(4))
    assert "Not acknowledged yet" in text
    assert "Open for 4m" in text
    assert "*Next*: the acknowledgement SLA passes in 1m." in text
    # The title is escaped: nobody is pinged by a catch-up.
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text


def test_the_last_two_updates_newest_first_the_diagnosis_and_the_fix_under_way():
    acked = INC.__class__(**{**vars(INC), "acknowledged_at": T0 + minutes(2), "acknowledged_by": "U0PRIMARY"})
    events = [
        event(EventKind.UPDATE, T0 + minutes(3), "first update"),
        event(EventKind.UPDATE, T0 + minutes(5), "second update"),
        event(EventKind.UPDATE, T0 + minutes(8), "third update"),
        event(EventKind.DIAGNOSE, T0 + minutes(6), "<@U0LEAD> ran diagnose: likely scenario 1A", "U0LEAD"),
    ]
    proposal = Proposal(
        id=1,
        incident=7,
        kind=ProposalKind.ROLLBACK,
        target="tai-00041",
        current="tai-00042",
        serving_revision="tai-00042",
        pinned=False,
        proposer="U0LEAD",
        created_at=T0 + minutes(7),
        status=ProposalStatus.EXECUTING,
        confirmed_by="U0ALICE",
        confirmed_at=T0 + minutes(9),
    )
    follow = FollowUp(1, 7, T0 + minutes(9), "U0ALICE", "alert on error rate")
    text = catchup.text(DEFAULT, facts(acked, events, [follow], [proposal]), T0 + minutes(10))
    assert "Acknowledged by <@U0PRIMARY> after 2m." in text
    assert "third update" in text and "second update" in text and "first update" not in text
    assert text.index("third update") < text.index("second update")
    assert "likely scenario 1A (4m ago)" in text
    assert "roll back to tai-00041" in text and "confirmed by <@U0ALICE>, under way" in text
    assert "alert on error rate" in text
    assert "on it: <@U0LEAD>" in text


def test_next_timer_is_the_earliest_of_escalation_slas_and_reminders():
    policy = DEFAULT.policy("P1")
    fired = frozenset({"page:oncall_primary"})
    timer = catchup.next_timer(INC, policy, fired, T0 + minutes(1))
    assert timer is not None and timer.at == T0 + minutes(5) and "acknowledgement" in timer.what
    timer = catchup.next_timer(INC, policy, fired | {"sla:ack"}, T0 + minutes(6))
    assert timer is not None and timer.at == T0 + minutes(10) and "oncall_secondary" in timer.what
    resolved = INC.__class__(**{**vars(INC), "status": "resolved", "resolved_at": T0 + minutes(30)})
    assert catchup.next_timer(resolved, policy, fired, T0 + minutes(31)) is None


def test_a_long_line_is_cut_without_breaking_a_mention():
    line = "x" * (catchup.LINE_MAX - 3) + "<@U0ALICE> more"
    cut = catchup._clip(line)
    assert cut.endswith("…") and "<@U0A" not in cut
