"""What a change owes PagerDuty, and what its events say: pure, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.domain import pagerduty
from bot.domain.incidents import declare
from bot.domain.policy import PagerDutyConfig

T0 = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
PD = PagerDutyConfig(severities=("P1", "P2"))


def incident(severity: str = "P1", title: str = "Checkout returns 500"):
    draft = declare(title=title, severity=severity, by="U0ALICE", now=T0, channel="incident-response")
    return replace(draft, number=7)


def targets(firings) -> list[str]:
    return [d.target for f in firings for d in f.deliveries]


def test_declare_of_a_listed_severity_owes_the_trigger_and_the_links():
    assert targets(pagerduty.on_declare(PD, incident("P1"))) == ["trigger", "links"]
    assert pagerduty.on_declare(PD, incident("P3")) == []
    assert pagerduty.on_declare(None, incident("P1")) == []


def test_severity_changes_into_and_out_of_the_list():
    p3 = incident("P3")
    assert targets(pagerduty.on_severity(PD, "P3", replace(p3, severity="P1"))) == ["trigger"]
    assert targets(pagerduty.on_severity(PD, "P1", replace(p3, severity="P4"))) == ["resolve"]
    assert pagerduty.on_severity(PD, "P1", replace(p3, severity="P2")) == []
    acked = replace(p3, severity="P1", acknowledged_at=T0, acknowledged_by="U0BOB")
    assert pagerduty.on_severity(PD, "P3", acked) == []  # someone is on it: no phone call


def test_the_dedup_key_is_stable_and_names_its_incident():
    inc = incident()
    assert pagerduty.dedup_key(inc) == pagerduty.dedup_key(replace(inc, title="other", status="identified"))
    assert pagerduty.key_number(pagerduty.dedup_key(inc)) == 7
    later = replace(inc, declared_at=T0 + timedelta(days=1))
    assert pagerduty.dedup_key(later) != pagerduty.dedup_key(inc)  # a fresh database's INC-7
    for foreign in ("d3640fbd41094207a1c11e58e46b1662", "incident-bot:INC-0:1", None, 7, "incident-bot:INC-7"):
        assert pagerduty.key_number(foreign) is None


def test_a_trigger_says_it_all_and_an_ack_only_the_key():
    inc = incident()
    body = pagerduty.event(inc, "trigger", routing_key="R", source="tai", label="Critical", links=[{"href": "h"}])
    assert body["payload"]["summary"] == "INC-7 P1 · Critical: Checkout returns 500"
    assert body["payload"]["severity"] == "critical" and body["payload"]["timestamp"] == "2026-12-02T03:00:00.000Z"
    assert body["links"] == [{"href": "h"}] and body["event_action"] == "trigger"
    links = pagerduty.event(inc, "links", routing_key="R", source="tai", label="Critical")
    assert links["event_action"] == "trigger" and links["dedup_key"] == body["dedup_key"]
    ack = pagerduty.event(inc, "acknowledge", routing_key="R", source="tai", label="Critical")
    assert ack == {"routing_key": "R", "event_action": "acknowledge", "dedup_key": body["dedup_key"]}
    assert [pagerduty.SEVERITY[s] for s in ("P1", "P2", "P3", "P4")] == ["critical", "error", "warning", "info"]


def test_the_summary_stays_within_1024_characters():
    inc = replace(incident(), title="x" * 2000)
    text = pagerduty.summary(inc, "Critical")
    assert len(text) == 1024 and text.endswith("…")


def test_someone_known_only_to_pagerduty_is_shown_by_name_escaped():
    ref = pagerduty.outside_person("Robin <!channel>")
    assert pagerduty.outside_name(ref) is not None
    assert "<!channel>" not in pagerduty.person(ref) and pagerduty.person(ref).endswith(" in PagerDuty")
    assert pagerduty.person("U0BOB") == "<@U0BOB>"
