"""The pure side of alerts: routing rules, their config, scenario matching, titles, payloads."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from bot import config as config_module
from bot.alerts.payloads import PayloadError, parse
from bot.alerts.webhook import authorized
from bot.config import ConfigError, default_config_text
from bot.domain.alerts import ALERTMANAGER, CLOUD_MONITORING, Alert, incident_title, route, scenario_for
from bot.domain.escalation import due_actions
from bot.domain.incidents import declare
from bot.domain.policy import AlertRoute
from bot.sandbox.monitoring import alertmanager_alert, alertmanager_notification, cloud_monitoring_notification

T0 = datetime(2026, 11, 29, 14, 2, tzinfo=UTC)

RULES = """
alerts:
  default: {severity: P3, action: propose}
  rules:
    - {match: {policy: "Error rate*"}, severity: P1, action: declare}
    - {match: {labels: {service: checkout}}, severity: P2, action: propose}
    - {match: {policy: "*latency*", labels: {env: "prod-*", team: payments}}, severity: P2, action: declare}
    - {match: {policy: "Error rate > 1%"}, severity: P4, action: ignore}
    - {match: {labels: {severity: info}}, action: ignore}
"""


def alerts_config(text: str = RULES):
    config = config_module.parse(default_config_text() + text)
    assert config.alerts is not None
    return config.alerts


def alert(policy: str = "Something", **labels: str) -> Alert:
    return Alert(CLOUD_MONITORING, "0.abc", policy, "open", T0, labels=labels)


def test_the_first_matching_rule_wins():
    # "Error rate > 1%" matches rules 0 and 3: the first one decides.
    assert route(alert("Error rate > 1%"), alerts_config()) == AlertRoute("P1", "declare")


def test_policy_globs_ignore_case():
    assert route(alert("error RATE above 5%"), alerts_config()) == AlertRoute("P1", "declare")
    assert route(alert("Checkout error rate"), alerts_config()) == AlertRoute("P3", "propose")  # glob is anchored


def test_every_label_must_match_and_label_globs_are_exact_case():
    rules = alerts_config()
    assert route(alert("Checkout p95 latency", env="prod-eu", team="payments"), rules) == AlertRoute("P2", "declare")
    assert route(alert("Checkout p95 latency", env="prod-eu"), rules) == AlertRoute("P3", "propose")
    assert route(alert("Checkout p95 latency", env="PROD-eu", team="payments"), rules) == AlertRoute("P3", "propose")
    assert route(alert("Anything", service="checkout"), rules) == AlertRoute("P2", "propose")
    assert route(alert("Anything", service="checkout-eu"), rules) == AlertRoute("P3", "propose")


def test_an_alert_no_rule_matches_follows_the_default():
    assert route(alert("Disk almost full"), alerts_config()) == AlertRoute("P3", "propose")


def test_a_rule_takes_what_it_leaves_out_from_the_default():
    assert route(alert("Noise", severity="info"), alerts_config()) == AlertRoute("P3", "ignore")


def test_without_an_alerts_section_there_is_no_alerts_config():
    assert config_module.parse(default_config_text()).alerts is None


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ("alerts: {default: {severity: P9}}", "alerts.default.severity: 'P9' is not a severity"),
        ("alerts: {default: {action: page}}", "alerts.default.action: 'page' is not an action"),
        ("alerts: {rules: [{severity: P1}]}", "alerts.rules[0].match: is required"),
        ("alerts: {rules: [{match: {policy: null, labels: {}}}]}", "alerts.rules[0].match: is required"),
        ("alerts: {rules: [{match: {title: x}}]}", "alerts.rules[0].match.title: unknown key"),
        ("alerts: {rules: [{match: {labels: [a]}}]}", "alerts.rules[0].match.labels: must be a mapping"),
        ("alerts: {rules: [{match: {policy: x}, action: shout}]}", "alerts.rules[0].action: 'shout' is not an action"),
        ("alerts: {rules: {match: {policy: x}}}", "alerts.rules: must be a list"),
        ("alerts: {defaults: {}}", "alerts.defaults: unknown key"),
    ],
)
def test_config_errors_name_the_key(section, error):
    with pytest.raises(ConfigError) as caught:
        config_module.parse(default_config_text() + section + "\n")
    assert any(e.startswith(error) for e in caught.value.errors), caught.value.errors


def test_check_config_shows_the_alerts_section():
    described = config_module.describe(config_module.parse(default_config_text() + RULES))
    assert "alerts:" in described and "Error rate*" in described and "prod-*" in described


def test_the_title_is_the_policy_and_its_summary_on_one_line():
    assert incident_title("Error rate > 5%", "Error rate is 12%\nfor checkout") == (
        "Error rate > 5%: Error rate is 12% for checkout"
    )
    assert incident_title("InstanceDown", "") == "InstanceDown"
    assert len(incident_title("P" * 100, "s" * 200)) == 150


@pytest.mark.parametrize(
    ("words", "scenario"),
    [
        (("Error rate > 5% for 2 min",), 2),
        (("Error rate > 10%", "", "Checkout returns 500"), 1),
        (("Checkout p95", "p95 latency > 1000ms for 5 min"), 3),
        (("Memory above 90%", "Container memory utilization"), 8),
        (("Pub/Sub unacked messages",), 7),
        (("Firestore write latency",), 5),
        (("Stripe charge failures",), 4),
        (("Request rate > 1000/s", "", "429 spike"), 9),
    ],
)
def test_the_scenario_comes_from_the_runbooks_alert_triggers(words, scenario):
    found = scenario_for(*words)
    assert found is not None and found.number == scenario


def test_an_alert_like_no_trigger_suggests_no_scenario():
    assert scenario_for("High CPU", "CPU utilization") is None


def test_the_ack_deadline_counts_from_the_alerts_start_and_pages_from_the_declare():
    config = config_module.parse(default_config_text())
    policy = config.policy("P1")  # ack within 5m; the secondary after 10m
    incident = declare(title="t", severity="P1", by="U0BOT", now=T0, channel="c", detected_at=T0 - timedelta(minutes=4))
    keys = [f.key for f in due_actions(incident, policy, frozenset({"page:oncall_primary"}), T0 + timedelta(minutes=1))]
    assert "sla:ack" in keys and "page:oncall_secondary" not in keys
    assert incident.detected == T0 - timedelta(minutes=4)


# -- payloads ------------------------------------------------------------------------------


def test_a_cloud_monitoring_notification_becomes_one_alert():
    payload = cloud_monitoring_notification(
        incident_id="0.mtdi83m6w8ao",
        policy="Error rate > 5%",
        started_at=T0,
        summary="Error rate above 0.05",
        user_labels={"service": "checkout"},
        severity="Error",
    )
    [found] = parse(CLOUD_MONITORING, payload, now=T0)
    assert (found.alert_id, found.policy, found.state, found.started_at) == (
        "0.mtdi83m6w8ao",
        "Error rate > 5%",
        "open",
        T0,
    )
    assert found.url and "0.mtdi83m6w8ao" in found.url
    assert found.labels["service"] == "checkout" and found.labels["service_name"] == "tai-autonomics"
    assert found.labels["team"] == "payments"  # the policy's user labels
    assert found.source_severity == found.labels["severity"] == "Error"
    assert found.group_key == "demo-project/Error rate > 5%"

    closed = cloud_monitoring_notification(
        incident_id="0.x", policy="p", state="closed", started_at=T0, ended_at=T0 + timedelta(minutes=30)
    )
    [found] = parse(CLOUD_MONITORING, closed, now=T0)
    assert found.state == "closed" and found.ended_at == T0 + timedelta(minutes=30)


def test_an_alertmanager_notification_becomes_one_alert_per_alert():
    firing = alertmanager_alert(
        alertname="HighLatency",
        fingerprint="c6eadffa33fcdf37",
        starts_at=T0,
        labels={"severity": "critical"},
        summary="p95 above 1 s",
    )
    resolved = alertmanager_alert(
        alertname="HighLatency", fingerprint="bc97ff14869b13e3", starts_at=T0, ends_at=T0 + timedelta(minutes=5)
    )
    first, second = parse(ALERTMANAGER, alertmanager_notification([firing, resolved]), now=T0)
    assert (first.policy, first.state, first.ended_at, first.summary) == ("HighLatency", "open", None, "p95 above 1 s")
    assert first.labels["severity"] == "critical" and first.url and first.url.startswith("http://prometheus")
    assert (second.state, second.ended_at) == ("closed", T0 + timedelta(minutes=5))
    assert first.group_key == second.group_key == '{}:{alertname="HighLatency"}'


@pytest.mark.parametrize(
    ("source", "payload", "error"),
    [
        (CLOUD_MONITORING, {"version": "1.2"}, "`incident` is missing"),
        (CLOUD_MONITORING, {"incident": {"policy_name": "p", "state": "open", "started_at": 1}}, "incident_id"),
        (CLOUD_MONITORING, {"incident": {"incident_id": "1", "state": "open", "started_at": 1}}, "policy_name"),
        (CLOUD_MONITORING, {"incident": {"incident_id": "1", "policy_name": "p", "state": "open"}}, "started_at"),
        (
            CLOUD_MONITORING,
            {"incident": {"incident_id": "1", "policy_name": "p", "state": "gone", "started_at": 1}},
            "open or closed",
        ),
        (
            CLOUD_MONITORING,
            {"incident": {"incident_id": "1", "policy_name": "p", "state": "open", "started_at": "x"}},
            "epoch",
        ),
        (ALERTMANAGER, {"alerts": []}, "non-empty list"),
        (ALERTMANAGER, {"alerts": [{"labels": {}}]}, "alertname"),
        (ALERTMANAGER, {"alerts": [{"labels": {"alertname": "A"}, "status": "firing"}]}, "fingerprint"),
        (
            ALERTMANAGER,
            {
                "alerts": [
                    {"labels": {"alertname": "A"}, "status": "firing", "fingerprint": "f", "startsAt": "yesterday"}
                ]
            },
            "RFC 3339",
        ),
        (ALERTMANAGER, [1], "JSON object"),
    ],
)
def test_a_payload_missing_what_it_needs_is_refused_with_the_field_named(source, payload, error):
    with pytest.raises(PayloadError, match=error.replace("(", r"\(")):
        parse(source, payload, now=T0)


def _basic(password: str, user: str = "incident-bot") -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("environ", "ok"),
    [
        (_basic("s3cret"), True),
        (_basic("s3cret", user=""), True),
        ({"HTTP_AUTHORIZATION": "Bearer s3cret"}, True),
        ({"HTTP_AUTHORIZATION": "bearer  s3cret "}, True),
        ({"QUERY_STRING": "token=s3cret"}, True),
        ({"QUERY_STRING": "a=1&token=s3cret"}, True),
        ({}, False),
        (_basic("s3cre"), False),
        (_basic(""), False),
        ({"HTTP_AUTHORIZATION": "Basic !!!not-base64"}, False),
        ({"HTTP_AUTHORIZATION": "Bearer "}, False),
        ({"HTTP_AUTHORIZATION": "Token s3cret"}, False),
        ({"QUERY_STRING": "token="}, False),
        ({"QUERY_STRING": "token=s3cretX"}, False),
    ],
)
def test_the_token_is_taken_from_basic_auth_a_bearer_or_the_query(environ, ok):
    assert authorized(environ, "s3cret") is ok


# -- what reaches Slack --------------------------------------------------------------------


def test_a_proposal_escapes_what_the_alert_says_and_links_only_plain_urls():
    from bot.domain.records import AlertRecord
    from bot.slack.blocks.alerts import proposal

    record = AlertRecord(
        id=7,
        source=ALERTMANAGER,
        alert_id="f",
        group_key="",
        policy="<!channel> Error rate",
        condition="",
        summary="<@U0CEO> look *now* & <https://evil.example|here>",
        url="javascript:alert(1)",
        labels={},
        severity="P2",
        action="propose",
        started_at=T0,
        ended_at=None,
        received_at=T0,
        last_seen_at=T0,
        notifications=1,
        closed_at=None,
        incident=None,
        proposal_channel=None,
        proposal_ts=None,
        dismissed_by=None,
        link_noted=False,
        close_noted=False,
    )
    blocks = proposal(config_module.parse(default_config_text()), record, scenario_for(record.policy))
    mrkdwn = [t for b in blocks for t in _mrkdwn_texts(b)]
    assert all("<!channel>" not in t and "<@U0CEO>" not in t and "javascript:" not in t for t in mrkdwn)
    assert any("&lt;@U0CEO&gt; look *now* &amp; &lt;https://evil.example|here&gt;" in t for t in mrkdwn)
    actions = next(b for b in blocks if b["type"] == "actions")
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("alert_declare", "alert:7"),
        ("alert_dismiss", "alert:7"),
    ]


def _mrkdwn_texts(node):
    if isinstance(node, dict):
        if node.get("type") == "mrkdwn":
            yield node["text"]
        for value in node.values():
            yield from _mrkdwn_texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _mrkdwn_texts(item)


def test_text_from_an_alert_cannot_pose_as_a_slack_entity():
    from bot.alerts.payloads import cloud_monitoring_alert
    from bot.core import text

    sneaky = f"{text.ENTITY_OPEN}@U0CEO|ceo{text.ENTITY_CLOSE} {text.ENTITY_OPEN}!channel{text.ENTITY_CLOSE}"
    payload = {
        "version": "1.2",
        "incident": {
            "incident_id": "0.x",
            "policy_name": f"Error rate {sneaky}",
            "state": "open",
            "started_at": 1795900000,
            "summary": sneaky,
            "policy_user_labels": {"team": sneaky},
        },
    }
    alert = cloud_monitoring_alert(payload)
    for value in (alert.policy, alert.summary, alert.labels["team"]):
        assert text.ENTITY_OPEN not in value and text.ENTITY_CLOSE not in value
        assert "<@U0CEO>" not in text.for_slack(value) and "<!channel>" not in text.for_slack(value)
