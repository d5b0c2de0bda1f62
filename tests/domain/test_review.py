"""The review's pure parts: timeline phases, the post-mortem draft, stats, the post-mortem reminder."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bot import config as config_module
from bot.core.errors import UsageError
from bot.domain import incidents, postmortem, stats
from bot.domain.escalation import due_actions, next_due, postmortem_reminder_key
from bot.domain.incidents import Incident
from bot.domain.records import Event, FollowUp, Resolution
from bot.domain.timeline import by_phase, from_slack, plain
from bot.store import Store

T0 = datetime(2026, 11, 29, 14, 32, tzinfo=UTC)
CONFIG = config_module.load(None)
P1 = CONFIG.policy("P1")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def event(kind: str, at_minutes: float, text: str, actor: str = "U0PRIMARY") -> Event:
    return Event(7, T0 + minutes(at_minutes), kind, actor, text)


SCRIPT = [
    event("declare", 0, "<@U0ALICE> declared INC-7 (P1): Checkout returns 500", "U0ALICE"),
    event("ack", 3, "<@U0PRIMARY> acknowledged INC-7"),
    event("note", 5, "📝 <@U0PRIMARY>: R&amp;D says a | in the config &lt;!channel&gt;"),
    event("diagnose", 8, "<@U0PRIMARY> ran diagnose: likely scenario 1A, bad deployment"),
    event("update", 12, "<@U0PRIMARY> posted an update (monitoring): rolled back to 00042"),
    event("resolve", 15, "<@U0PRIMARY> resolved INC-7: Rolled back"),
]


def resolved_incident() -> Incident:
    return Incident(
        number=7,
        title="Checkout returns 500",
        severity="P1",
        status="resolved",
        commander="U0ALICE",
        declared_by="U0ALICE",
        declared_at=T0,
        acknowledged_at=T0 + minutes(3),
        acknowledged_by="U0PRIMARY",
        resolved_at=T0 + minutes(15),
        resolved_by="U0PRIMARY",
        summary="Rolled back",
        fix_started_at=T0 + minutes(8),
    )


def facts(**overrides: object) -> postmortem.Facts:
    values: dict[str, object] = {
        "incident": resolved_incident(),
        "events": SCRIPT,
        "resolution": Resolution("U0PRIMARY", "Rolled back to 00042", "Bad deploy 00043", "All checkouts failed"),
        "followups": [FollowUp(1, 7, T0 + minutes(20), "U0LEAD", "Add a canary | stage")],
        "pages": [postmortem.Page("U0PRIMARY", T0), postmortem.Page("U0SECOND", T0 + minutes(10))],
        "service": "tai-autonomics",
        "severity_label": "Critical",
        "ack_within": P1.ack_within,
        "generated_at": T0 + minutes(16),
    }
    values.update(overrides)
    return postmortem.Facts(**values)  # type: ignore[arg-type]


# -- timeline phases --------------------------------------------------------------------------


def test_events_are_grouped_by_the_runbook_phase_they_happened_in():
    groups = [(phase, [e.kind for e in group]) for phase, group in by_phase(SCRIPT)]
    assert groups == [
        ("detected", ["declare"]),
        ("acknowledged", ["ack", "note"]),
        ("diagnosed", ["diagnose"]),
        ("mitigated", ["update"]),
        ("resolved", ["resolve"]),
    ]


def test_a_reopened_incident_shows_its_phases_again():
    reopened = [*SCRIPT, event("reopen", 30, "<@U0ALICE> reopened INC-7"), event("note", 31, "📝 again")]
    assert [phase for phase, _ in by_phase(reopened)][-2:] == ["resolved", "detected"]


def test_a_pinned_message_cannot_ping_anyone_and_mentions_stay_people():
    assert from_slack("<!channel> look <@U0BOB|bob> at <https://x.io|the graph> in <#C1|inc-7>") == (
        "@channel look <@U0BOB> at the graph in inc-7"
    )
    assert plain("📝 <@U0BOB>: a &lt;b&gt; &amp; c") == "📝 @U0BOB: a <b> & c"


# -- the post-mortem draft --------------------------------------------------------------------


def table_rows(markdown: str) -> list[list[str]]:
    section = markdown.split("## Timeline", 1)[1].split("## Impact", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| 20")]
    # Split on cell borders only, not on an escaped \| inside a cell.
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_the_draft_follows_the_runbook_review_template():
    markdown = postmortem.render(facts())
    headings = [line for line in markdown.splitlines() if line.startswith("#")]
    assert headings == [
        "# Incident Post-Mortem: tai-autonomics 2026-11-29",
        "## Executive Summary",
        "## Timeline",
        "## Impact",
        "## Root Cause",
        "## Detection & Response",
        "## What We Did Well",
        "## What We'll Improve",
        "## Followup Actions",
        "## Attendees",
    ]


def test_the_timeline_table_lists_each_event_once_in_order_with_time_since_the_start():
    rows = table_rows(postmortem.render(facts()))
    assert [row[:3] for row in rows] == [
        ["2026-11-29 14:32:00", "+0s", "detected"],
        ["2026-11-29 14:35:00", "+3m", "acknowledged"],
        ["2026-11-29 14:37:00", "+5m", "acknowledged"],
        ["2026-11-29 14:40:00", "+8m", "diagnosed"],
        ["2026-11-29 14:44:00", "+12m", "mitigated"],
        ["2026-11-29 14:47:00", "+15m", "resolved"],
    ]
    # Plain text in the file: mentions as @U…, escapes decoded, a | kept inside its cell.
    assert rows[2][3] == "📝 @U0PRIMARY: R&D says a \\| in the config <!channel>"


def test_impact_has_duration_paging_time_to_ack_and_to_mitigate():
    markdown = postmortem.render(facts())
    assert "- **Duration**: 15m (2026-11-29 14:32:00 to 2026-11-29 14:47:00 UTC)" in markdown
    assert "- **Customers Affected**: All checkouts failed" in markdown
    assert "- **Paged**: @U0PRIMARY at 14:32:00 (+0s), @U0SECOND at 14:42:00 (+10m)" in markdown
    assert "- **Time to acknowledge**: 3m (by @U0PRIMARY); the P1 target of 5m was met" in markdown
    assert "- **Time to mitigate**: 12m" in markdown
    assert "Bad deploy 00043" in markdown.split("## Root Cause", 1)[1]
    assert "- [ ] Add a canary | stage - added by @U0LEAD on 2026-11-29" in markdown


def test_duration_counts_from_the_first_alert_when_one_came_before_the_declare():
    alerted = [event("alert", -4, "Cloud Monitoring: Error rate > 10%", "bot"), *SCRIPT]
    markdown = postmortem.render(facts(events=alerted))
    assert "- **Duration**: 19m" in markdown
    assert table_rows(markdown)[0][:2] == ["2026-11-29 14:28:00", "+0s"]


def test_a_draft_without_a_resolve_form_keeps_the_template_placeholders():
    markdown = postmortem.render(facts(resolution=None, followups=[], pages=[]))
    assert "[Detailed explanation of what caused the incident]" in markdown
    assert "- [ ] [Action] - [Owner] by [Date]" in markdown


# -- stats ------------------------------------------------------------------------------------


def seeded_store(url: str) -> Store:
    store = Store(url)
    # P1: acks after 2, 4, 10 min (SLA 5m: one breach); resolved after 30, 60, 90 min.
    # P2: acks after 5 and 20 min (SLA 15m: one breach), one open and never acked (a breach).
    seeds = [
        ("P1", 1, 2, 30),
        ("P1", 2, 4, 60),
        ("P1", 3, 10, 90),
        ("P2", 4, 5, 45),
        ("P2", 5, 20, None),
        ("P2", 6, None, None),
        ("P3", 40, 30, 120),  # declared 40 days ago: outside a 30-day window
    ]
    now = T0
    for severity, days_ago, ack_min, resolve_min in seeds:
        declared = now - timedelta(days=days_ago)
        draft = incidents.declare(title="x", severity=severity, by="U0ALICE", now=declared, channel="C0INCIDENT")
        incident = store.create_incident(draft, declared)
        if ack_min is not None:
            at = declared + minutes(ack_min)
            store.change(incident, lambda cur, at=at: incidents.acknowledge(cur, by="U0PRIMARY", now=at), at)
            incident = store.get(incident.number)
        if resolve_min is not None:
            at = declared + minutes(resolve_min)
            store.change(incident, lambda cur, at=at: incidents.resolve(cur, by="U0PRIMARY", now=at, summary=None), at)
    return store


def test_stats_from_a_seeded_store_match_hand_computed_medians(store_url):
    store = seeded_store(store_url)
    rows = store.stat_rows(T0 - timedelta(days=30))
    ack_within = {name: policy.ack_within for name, policy in CONFIG.severities.items()}
    p1, p2 = stats.compute(rows, ack_within, T0)
    assert (p1.severity, p1.count) == ("P1", 3)
    assert (p1.mtta_median, p1.mtta_p90) == (minutes(4), minutes(10))
    assert (p1.mttr_median, p1.mttr_p90) == (minutes(60), minutes(90))
    assert p1.ack_breaches == 1
    assert (p2.severity, p2.count) == ("P2", 3)
    assert (p2.mtta_median, p2.mtta_p90) == (minutes(12.5), minutes(20))
    assert (p2.mttr_median, p2.mttr_p90) == (minutes(45), minutes(45))
    assert p2.ack_breaches == 2  # 20 min > 15m, and one never acknowledged
    assert stats.severity_line(p1) == "P1: 3 · MTTA median 4m, p90 10m · MTTR median 1h, p90 1h 30m · 1 ack SLA breach"
    store.close()


def test_stats_read_the_window_through_the_declared_at_index(tmp_path):
    store = seeded_store(str(tmp_path / "stats.db"))
    plan = store.db.execute(
        "EXPLAIN QUERY PLAN SELECT number, severity, declared_at, acknowledged_at, resolved_at FROM incidents"
        " WHERE declared_at >= ? ORDER BY declared_at",
        ["2026-01-01"],
    ).fetchall()
    assert any("USING INDEX" in str(row[-1]) and "declared_at" in str(row[-1]) for row in plan), plan
    store.close()


@pytest.mark.parametrize(("text", "days"), [("", 30), ("7d", 7), ("30d", 30), (" 90D ", 90), ("365d", 365)])
def test_stats_windows(text, days):
    assert stats.parse_window(text, "usage") == timedelta(days=days)


@pytest.mark.parametrize("text", ["9999d", "0d", "30", "1w", "-7d", "`rm`"])
def test_bad_stats_windows_are_refused_with_the_choices(text):
    with pytest.raises(UsageError) as info:
        stats.parse_window(text, "/incident stats [7d|30d|90d]")
    assert "7d" in info.value.message and info.value.usage


# -- the post-mortem reminder -----------------------------------------------------------------


def test_the_post_mortem_reminder_is_due_once_after_resolution():
    inc = resolved_incident()
    due_after = timedelta(hours=24)
    assert due_actions(inc, P1, frozenset(), inc.resolved_at + timedelta(hours=23), due_after) == []
    assert next_due(inc, P1, frozenset(), inc.resolved_at, due_after) == inc.resolved_at + due_after
    [firing] = due_actions(inc, P1, frozenset(), inc.resolved_at + due_after, due_after)
    assert firing.key == postmortem_reminder_key(inc)
    assert [d.kind for d in firing.deliveries] == ["postmortem_reminder"]
    fired = frozenset({firing.key})
    assert due_actions(inc, P1, fired, inc.resolved_at + timedelta(hours=30), due_after) == []
    assert next_due(inc, P1, fired, inc.resolved_at + timedelta(hours=30), due_after) is None


def test_no_post_mortem_reminder_for_other_severities_or_reopened_incidents():
    inc = resolved_incident()
    later = inc.resolved_at + timedelta(days=2)
    assert due_actions(inc, P1, frozenset(), later, None) == []
    assert next_due(inc, P1, frozenset(), later, None) is None
    reopened = incidents.reopen(inc, by="U0ALICE", now=later, reason="back").incident
    assert [f.key for f in due_actions(reopened, P1, frozenset(), later, timedelta(hours=24))] != [
        postmortem_reminder_key(inc)
    ]


def test_reopen_restarts_the_update_clock_and_refuses_an_open_incident():
    inc = resolved_incident()
    at = T0 + timedelta(hours=2)
    change = incidents.reopen(inc, by="U0ALICE", now=at, reason="<!here> errors are back")
    assert change.incident.is_open and change.incident.resolved_at is None and change.incident.summary is None
    assert change.incident.last_update_at == at
    assert change.text == "<@U0ALICE> reopened INC-7: &lt;!here&gt; errors are back"
    told = frozenset(f"notify:{ref}" for ref in P1.notify)  # fired long before the resolution
    assert next_due(change.incident, P1, told, at) == at + P1.update_every
    with pytest.raises(UsageError):
        incidents.reopen(change.incident, by="U0ALICE", now=at, reason=None)


def test_stats_stay_fast_with_years_of_history(tmp_path):
    import time

    store = Store(str(tmp_path / "big.db"))
    rows = []
    for i in range(50_000):  # one incident an hour for almost six years
        declared = T0 - timedelta(hours=i)
        rows.append(
            {
                "title": "x",
                "severity": "P2",
                "status": "resolved",
                "commander": "U0ALICE",
                "declared_by": "U0ALICE",
                "declared_at": declared.isoformat(),
                "acknowledged_at": (declared + minutes(5)).isoformat(),
                "resolved_at": (declared + minutes(50)).isoformat(),
            }
        )
    with store.transaction() as db:
        db.table("incidents").insert_all(rows, batch_size=5000)
    started = time.perf_counter()
    window = store.stat_rows(T0 - timedelta(days=7))
    elapsed = time.perf_counter() - started
    assert len(window) == 7 * 24 + 1
    assert elapsed < 0.25, f"{elapsed:.3f}s for a week out of 50,000 incidents"
    store.close()


def test_stats_measure_an_alert_raised_incident_from_the_alerts_start():
    from bot.domain.records import StatRow
    from bot.domain.stats import compute

    declared = datetime(2026, 11, 2, 12, 10, tzinfo=UTC)
    alert_started = declared - timedelta(minutes=8)
    row = StatRow(1, "P1", declared, declared + timedelta(minutes=1), declared + timedelta(minutes=20), alert_started)
    [p1] = compute([row], {"P1": timedelta(minutes=5)}, declared + timedelta(hours=1))
    assert p1.mtta_median == timedelta(minutes=9) and p1.mttr_median == timedelta(minutes=28)
    assert p1.ack_breaches == 1  # 9 min from the alert, against a 5 min target: as the SLA warning said


def test_the_draft_names_people_it_has_names_for_and_keeps_the_id_of_the_others() -> None:
    plain = postmortem.render(facts())
    assert "@U0PRIMARY" in plain and {"U0ALICE", "U0PRIMARY"} <= set(postmortem.people_in(plain))
    named = postmortem.render(facts(names={"U0PRIMARY": "Pat | Primary\nOn call"}))
    assert "@U0PRIMARY" not in named
    assert "@Pat \\| Primary On call" in named  # one line, and a table cell stays whole
    assert "@U0ALICE" in named  # no name found: the ID, not nothing
