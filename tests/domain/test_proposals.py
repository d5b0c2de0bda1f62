"""bot/proposals.py: who may start a proposal when, the rollback target, and the sizes people type.

Pure rules with an injected `now`: no sandbox, no sleeping.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot import config
from bot.domain.proposals import (
    Proposal,
    TargetError,
    confirm_verdict,
    is_pinned,
    parse_instances,
    parse_memory,
    rollback_target,
    serving_revision,
    stale_message,
)
from bot.domain.service import RevisionState, ServiceState, TrafficShare
from bot.store import Store

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
BAD, GOOD, OLDER, BROKEN = "svc-00043-bad", "svc-00042-xyz", "svc-00041-kom", "svc-00044-new"


def proposal(**changes) -> Proposal:
    base = Proposal(
        id=1,
        incident=7,
        kind="rollback",
        target=GOOD,
        current=BAD,
        serving_revision=BAD,
        pinned=False,
        proposer="U0LEAD",
        created_at=T0,
    )
    return replace(base, **changes)


def service(*traffic: TrafficShare, latest_ready: str = BAD) -> ServiceState:
    return ServiceState(
        name="projects/p/locations/r/services/svc",
        url="https://svc",
        ready=True,
        ready_message="",
        latest_created_revision=latest_ready,
        latest_ready_revision=latest_ready,
        traffic=traffic or (TrafficShare(BAD, 100, latest=True),),
        memory_limit="512Mi",
        max_instances=10,
    )


def revision(name: str, created: datetime, ready: bool | None = True) -> RevisionState:
    return RevisionState(name, created, ready, "", created, "image", "512Mi")


REVISIONS = [
    revision(BAD, T0 - timedelta(minutes=8)),
    revision(GOOD, T0 - timedelta(days=1)),
    revision(OLDER, T0 - timedelta(days=3)),
]


# -- confirm verdicts ---------------------------------------------------------------------------


def test_a_pending_fresh_proposal_may_start():
    assert confirm_verdict(proposal(), user="U0PRIMARY", now=T0 + timedelta(minutes=14)).start


def test_a_proposal_expires_after_fifteen_minutes():
    verdict = confirm_verdict(proposal(), user="U0PRIMARY", now=T0 + timedelta(minutes=15))
    assert verdict.outcome == "expired" and "Nothing was sent" in verdict.message


def test_the_expiry_is_configurable():
    later = T0 + timedelta(seconds=2)
    assert confirm_verdict(proposal(), user="U0X", now=later, expires_after=timedelta(seconds=1)).outcome == "expired"


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("executing", "in_progress"),
        ("succeeded", "done"),
        ("failed", "done"),
        ("unknown", "done"),
        ("cancelled", "cancelled"),
        ("expired", "expired"),
    ],
)
def test_only_a_pending_proposal_may_start(status, outcome):
    verdict = confirm_verdict(proposal(status=status, confirmed_by="U0LEAD"), user="U0PRIMARY", now=T0)
    assert verdict.outcome == outcome and not verdict.start


def test_the_two_person_rule_refuses_the_proposer_only():
    p = proposal()
    assert confirm_verdict(p, user="U0LEAD", now=T0, require_second_person=True).outcome == "own_proposal"
    assert confirm_verdict(p, user="U0PRIMARY", now=T0, require_second_person=True).start
    assert confirm_verdict(p, user="U0LEAD", now=T0, require_second_person=False).start


def test_stale_when_another_revision_serves_the_most_traffic():
    assert stale_message(proposal(), BAD) is None
    assert "now serves the most traffic" in (stale_message(proposal(), GOOD) or "")


# -- traffic and the rollback target ------------------------------------------------------------


def test_the_serving_revision_is_the_largest_share_and_latest_resolves_to_latest_ready():
    split = service(TrafficShare(GOOD, 30), TrafficShare(BAD, 70, latest=True))
    assert serving_revision(split) == BAD
    assert not is_pinned(split)
    assert is_pinned(service(TrafficShare(GOOD, 100)))


def test_the_default_target_is_the_newest_ready_revision_created_before_the_serving_one():
    assert rollback_target(service(), REVISIONS).name == GOOD


def test_a_not_ready_revision_is_skipped_and_newer_ones_are_not_candidates():
    revisions = [
        revision(BROKEN, T0 - timedelta(minutes=1)),
        revision(BAD, T0 - timedelta(minutes=8)),
        revision(GOOD, T0 - timedelta(days=1), ready=False),
        revision(OLDER, T0 - timedelta(days=3)),
    ]
    assert rollback_target(service(), revisions).name == OLDER


def test_no_older_ready_revision_is_a_clear_error():
    with pytest.raises(TargetError, match="No Ready revision older than"):
        rollback_target(service(), [revision(BAD, T0)])


def test_a_named_revision_must_exist_be_ready_and_not_already_serve():
    assert rollback_target(service(), REVISIONS, OLDER).name == OLDER
    with pytest.raises(TargetError, match="no revision `svc-09999`"):
        rollback_target(service(), REVISIONS, "svc-09999")
    failed = [*REVISIONS, revision("svc-00039-old", T0 - timedelta(days=9), ready=False)]
    with pytest.raises(TargetError, match="failed"):
        rollback_target(service(), failed, "svc-00039-old")
    with pytest.raises(TargetError, match="already serves"):
        rollback_target(service(), REVISIONS, BAD)


# -- sizes --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("128Mi", 128 * 2**20), ("1Gi", 2**30), ("32Gi", 32 * 2**30), ("2G", 2 * 10**9), ("512000Ki", 512000 * 1024)],
)
def test_memory_in_kubernetes_units_within_bounds(text, size):
    assert parse_memory(text) == (text, size)


@pytest.mark.parametrize("text", ["127Mi", "33Gi", "64", "1TB", "1.5Gi", "-1Gi", "", "1 Gi"])
def test_memory_out_of_bounds_or_malformed_is_refused(text):
    with pytest.raises(ValueError):
        parse_memory(text)


def test_instances_between_one_and_a_thousand():
    assert parse_instances("1") == 1 and parse_instances("1000") == 1000
    for bad in ("0", "1001", "ten", "-3", "2.5"):
        with pytest.raises(ValueError):
            parse_instances(bad)


# -- the store: one start per proposal ----------------------------------------------------------


def test_only_one_of_two_starts_wins_and_an_expired_one_is_marked(store_url):
    store = Store(store_url)
    try:
        saved = store.create_proposal(proposal(id=0), T0, "proposed")

        def decide(now):
            return lambda current: confirm_verdict(current, user="U0PRIMARY", now=now)

        first, started = store.start_proposal(saved.id, decide(T0), T0, user="U0PRIMARY")
        second, _ = store.start_proposal(saved.id, decide(T0), T0, user="U0LEAD")
        assert first.start and started.status == "executing" and started.confirmed_by == "U0PRIMARY"
        assert second.outcome == "in_progress"

        late = store.create_proposal(proposal(id=0), T0, "proposed")
        verdict, expired = store.start_proposal(late.id, decide(T0 + timedelta(hours=1)), T0, user="U0PRIMARY")
        assert verdict.outcome == "expired" and expired.status == "expired"
        assert store.get_proposal(late.id).status == "expired"
    finally:
        store.close()


def test_an_execution_is_reported_lapsed_only_once_its_executors_heartbeat_is_old_and_finished_once(store_url):
    store = Store(store_url)
    try:
        saved = store.create_proposal(proposal(id=0), T0, "proposed")
        decide = lambda current: confirm_verdict(current, user="U0PRIMARY", now=T0)  # noqa: E731
        _, started = store.start_proposal(saved.id, decide, T0, user="U0PRIMARY", executor="instance-a")
        assert started.status == "executing"
        # Alive: beating, so not lapsed, whoever leads; another instance's beat is refused.
        assert store.beat_execution(saved.id, "instance-a", T0 + timedelta(seconds=8))
        assert not store.beat_execution(saved.id, "instance-b", T0 + timedelta(seconds=9))
        assert store.lapsed_executions(T0 + timedelta(seconds=5)) == []
        # Dead: its last beat is older than the lapse.
        assert [p.id for p in store.lapsed_executions(T0 + timedelta(seconds=9))] == [saved.id]
        # A SQLite successor treats another executor's changes as its dead predecessor's, never its own.
        assert [p.id for p in store.lapsed_executions(T0, dead_except="instance-b")] == [saved.id]
        assert store.lapsed_executions(T0, dead_except="instance-a") == []

        first = store.finish_proposal(saved.id, "unknown", "outcome unknown", T0, actor="bot", text="unknown")
        late = store.finish_proposal(saved.id, "succeeded", "rolled back", T0, actor="U0PRIMARY", text="done")
        assert first is not None and first.status == "unknown"
        assert late is None, "the finishing write that matched no executing row records nothing"
        assert store.get_proposal(saved.id).status == "unknown"
        kinds = [e.kind for e in store.timeline(saved.incident)]
        assert kinds.count("rollback-unknown") == 1 and kinds.count("rollback-succeeded") == 0
        assert [a.action for a in store.audit_log(saved.incident)].count("rollback-succeeded") == 0
        assert store.lapsed_executions(T0 + timedelta(hours=1)) == []
    finally:
        store.close()


# -- config ------------------------------------------------------------------------------------


def test_rollback_rules_default_to_the_runbook():
    rules = config.load(None).rollback
    assert not rules.require_second_person
    assert rules.expires_after == timedelta(minutes=15) and rules.health_timeout == timedelta(seconds=60)


def test_bad_rollback_rules_name_the_key():
    text = config.default_config_text().replace("require_second_person: false", "require_second_person: maybe")
    text = text.replace("health_timeout: 60s", "health_timeout: soon")
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text)
    joined = "; ".join(caught.value.errors)
    assert "rollback.require_second_person" in joined and "rollback.health_timeout" in joined


def test_a_resolved_incident_refuses_confirm_before_anything_else():
    p = proposal()
    verdict = confirm_verdict(p, user="U0PRIMARY", now=T0, incident_resolved=True)
    assert verdict.outcome == "resolved" and not verdict.start and "Nothing was sent" in verdict.message
