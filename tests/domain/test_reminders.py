"""Update reminders and the fix clock (bot/escalation.py), with the runbook's cadence and an injected clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot import config
from bot.domain import incidents
from bot.domain.escalation import due_actions, next_due
from bot.domain.incidents import Incident

T0 = datetime(2026, 1, 25, 14, 32, tzinfo=UTC)
CONFIG = config.parse(config.default_config_text(), source="built-in default")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def declared(severity: str = "P1") -> Incident:
    draft = incidents.declare(title="Checkout returns 500", severity=severity, by="U0LEAD", now=T0, channel="C1")
    return replace(draft, number=7)


def reminder_keys(incident: Incident, fired: set[str], now: datetime) -> list[str]:
    firings = due_actions(incident, CONFIG.policy(incident.severity), frozenset(fired), now)
    return [f.key for f in firings if f.key.startswith(("reminder", "sla:fix"))]


def tick(incident: Incident, fired: set[str], now: datetime) -> list[str]:
    keys = [f.key for f in due_actions(incident, CONFIG.policy(incident.severity), frozenset(fired), now)]
    fired.update(keys)
    return [k for k in keys if k.startswith(("reminder", "sla:fix"))]


def when(incident: Incident, fired: set[str], now: datetime) -> datetime | None:
    return next_due(incident, CONFIG.policy(incident.severity), frozenset(fired), now)


def test_p1_reminds_every_15_minutes_after_declare():
    inc, fired = declared("P1"), set()
    tick(inc, fired, T0)
    assert reminder_keys(inc, fired, T0 + minutes(15) - timedelta(seconds=1)) == []
    assert tick(inc, fired, T0 + minutes(15)) == ["sla:fix", f"reminder:{T0.isoformat()}:1"]
    assert tick(inc, fired, T0 + minutes(16)) == []
    assert tick(inc, fired, T0 + minutes(30)) == [f"reminder:{T0.isoformat()}:2"]


def test_p2_reminds_every_30_minutes_and_p4_never():
    p2, fired = declared("P2"), set()
    tick(p2, fired, T0)
    assert reminder_keys(p2, fired, T0 + minutes(29)) == []
    assert f"reminder:{T0.isoformat()}:1" in reminder_keys(p2, fired, T0 + minutes(30))
    p4 = declared("P4")
    assert reminder_keys(p4, set(), T0 + timedelta(days=3)) == []


def test_an_update_pushes_the_next_reminder_back_and_stops_the_fix_clock():
    inc, fired = declared("P1"), set()
    tick(inc, fired, T0)
    change = incidents.post_update(inc, text="Rolling back", status="identified", by="U0LEAD", now=T0 + minutes(10))
    updated = change.incident
    assert updated.fix_started_at == T0 + minutes(10)
    assert reminder_keys(updated, fired, T0 + minutes(24)) == []
    acked = replace(updated, acknowledged_at=T0 + minutes(11), acknowledged_by="U0PRIMARY")
    assert when(acked, fired, T0 + minutes(11)) == T0 + minutes(25)
    assert tick(acked, fired, T0 + minutes(25)) == [f"reminder:{(T0 + minutes(10)).isoformat()}:1"]


def test_an_investigating_update_does_not_stop_the_fix_clock():
    inc = incidents.post_update(declared("P1"), text="Looking", status=None, by="U0LEAD", now=T0 + minutes(2)).incident
    assert inc.fix_started_at is None
    assert "sla:fix" in reminder_keys(inc, set(), T0 + minutes(15))


def test_snooze_holds_reminders_until_it_ends_then_the_cadence_resumes():
    inc, fired = declared("P1"), set()
    tick(inc, fired, T0)
    tick(inc, fired, T0 + minutes(15))
    snoozed = incidents.snooze(inc, until=T0 + minutes(16) + minutes(60), by="U0LEAD").incident
    assert reminder_keys(snoozed, fired, T0 + minutes(30)) == []
    end = T0 + minutes(76)
    acked = replace(snoozed, acknowledged_at=T0 + minutes(1))
    assert when(acked, fired, T0 + minutes(17)) == end
    assert tick(acked, fired, end) == [f"reminder:{end.isoformat()}:1"]
    assert when(acked, fired, end) == end + minutes(15)


def test_a_snooze_shorter_than_the_cadence_changes_nothing():
    inc = incidents.snooze(declared("P1"), until=T0 + minutes(10), by="U0LEAD").incident
    assert f"reminder:{T0.isoformat()}:1" in reminder_keys(inc, set(), T0 + minutes(15))


def test_the_third_reminder_in_a_row_also_notifies_the_next_person_on_the_path():
    inc, fired = declared("P1"), set()
    tick(inc, fired, T0)  # primary paged at declare, then acknowledged
    inc = replace(inc, acknowledged_at=T0 + minutes(1), acknowledged_by="U0PRIMARY")
    tick(inc, fired, T0 + minutes(15))
    assert tick(inc, fired, T0 + minutes(30)) == [f"reminder:{T0.isoformat()}:2"]
    third = tick(inc, fired, T0 + minutes(45))
    assert third == [f"reminder:{T0.isoformat()}:3", "reminder_notify:oncall_secondary"]
    assert tick(inc, fired, T0 + minutes(60)) == [f"reminder:{T0.isoformat()}:4", "reminder_notify:vp_product"]


def test_after_downtime_only_the_latest_reminder_goes_out():
    inc, fired = declared("P1"), set()
    inc = replace(inc, acknowledged_at=T0 + minutes(1))
    tick(inc, fired, T0)
    late = tick(inc, fired, T0 + minutes(32))
    assert late == ["sla:fix", f"reminder:{T0.isoformat()}:2"]
    assert tick(inc, fired, T0 + minutes(33)) == []


def test_raising_severity_tightens_the_cadence_and_resolve_stops_everything():
    p3, fired = declared("P3"), set()
    tick(p3, fired, T0)
    assert reminder_keys(p3, fired, T0 + minutes(20)) == []
    p1 = incidents.change_severity(p3, severity="P1", by="U0LEAD").incident
    assert f"reminder:{T0.isoformat()}:1" in reminder_keys(p1, fired, T0 + minutes(20))
    resolved = incidents.resolve(p1, by="U0LEAD", now=T0 + minutes(21), summary=None).incident
    assert reminder_keys(resolved, fired, T0 + minutes(90)) == []
    assert when(resolved, fired, T0 + minutes(21)) is None


def test_diagnose_starts_the_fix_and_stops_the_nudge():
    inc = declared("P1")
    started = incidents.start_fix(inc, by="U0LEAD", now=T0 + minutes(3), how="diagnose")
    assert started is not None
    assert "sla:fix" not in reminder_keys(started.incident, set(), T0 + minutes(20))
    assert incidents.start_fix(started.incident, by="U0LEAD", now=T0 + minutes(4), how="again") is None
