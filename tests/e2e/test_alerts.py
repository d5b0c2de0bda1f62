"""Alerts to incidents over real HTTP: Cloud Monitoring and Alertmanager POST to the running bot,
Slack is the sandbox. Payloads are shaped field for field like the real ones."""

from __future__ import annotations

import http.client
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest

from bot.alerts.webhook import webhook
from bot.sandbox.monitoring import (
    alertmanager_alert,
    alertmanager_notification,
    cloud_monitoring_notification,
    send,
)
from bot.sandbox.runner import ALERT_TOKEN, SandboxedBot, manifest_scopes
from bot.sandbox.slack import SlackSandbox
from tests.conftest import FAST_CONFIG

ANNOUNCE = "C0INCIDENT"
PRIMARY = "U0PRIMARY"

ALERTS_CONFIG = (
    FAST_CONFIG
    + """
alerts:
  default: {severity: P3, action: ignore}
  rules:
    - {match: {policy: "Error rate*"}, severity: P1, action: declare}
    - {match: {policy: "InstanceDown"}, severity: P2, action: declare}
    - {match: {labels: {service_name: "tai-*", team: payments}}, severity: P2, action: propose}
"""
)


@pytest.fixture
def alert_bot() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=ALERTS_CONFIG) as running:
        yield running
        assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"


def cm_url(bot: SandboxedBot) -> str:
    return f"{bot.base_url}/alerts/cloud-monitoring"


def am_url(bot: SandboxedBot) -> str:
    return f"{bot.base_url}/alerts/alertmanager"


def error_rate(state: str = "open", started: datetime | None = None, **kwargs):
    started = started or datetime.now(UTC) - timedelta(seconds=20)
    return cloud_monitoring_notification(
        incident_id="0.mtdi83m6w8ao",
        policy="Error rate > 5% for 2 min",
        state=state,
        started_at=started,
        ended_at=started + timedelta(minutes=3) if state == "closed" else None,
        summary="Error rate for tai-autonomics is above the threshold of 0.05 with a value of 0.124.",
        **kwargs,
    )


def latency(state: str = "open", started: datetime | None = None):
    started = started or datetime.now(UTC) - timedelta(seconds=20)
    return cloud_monitoring_notification(
        incident_id="0.nlatency42",
        policy="Checkout p95 latency",
        condition="p95 latency > 1000ms for 5 min",
        state=state,
        started_at=started,
        ended_at=started + timedelta(minutes=2) if state == "closed" else None,
        summary="p95 latency for tai-autonomics is above 1000 ms with a value of 1840 ms.",
        severity="Warning",
    )


def announcement(bot: SandboxedBot, number: int = 1):
    return bot.slack.wait_for_message(ANNOUNCE, f"INC-{number} ·", with_button="incident_resolve")


def current(bot: SandboxedBot, message):
    """The message as it is now (after edits)."""
    return next(m for m in bot.slack.messages_in(message.channel) if m.ts == message.ts)


def thread_text(bot: SandboxedBot, message) -> str:
    return "\n".join(m.all_text for m in bot.slack.thread(message.channel, message.ts))


def test_an_open_alert_with_a_declare_rule_opens_an_incident_and_pages_the_primary(alert_bot):
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    before = time.monotonic()
    delivery = send(cm_url(alert_bot), error_rate(started=started), token=ALERT_TOKEN)

    assert delivery.status == 202 and time.monotonic() - before < 1.0
    assert delivery.body["outcomes"] == ["new"]
    page = alert_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    assert "Error rate &gt; 5% for 2 min" in page.all_text
    incident = alert_bot.bot.store.get(1)
    assert incident.title.startswith("Error rate > 5% for 2 min: Error rate for tai-autonomics")
    assert incident.severity == "P1"
    assert incident.detected_at == started and incident.detected == started
    # Declared by the bot; commanded by the first person the path pages, so reminders reach a person.
    assert (incident.declared_by, incident.commander) == ("U0BOT", PRIMARY)
    message = announcement(alert_bot)
    assert "*Detected*" in message.all_text and f"{started:%Y-%m-%d %H:%M} UTC" in message.all_text
    link = alert_bot.slack.wait_for(lambda: "Alert firing since" in thread_text(alert_bot, message) and message)
    text = thread_text(alert_bot, link)
    assert "console.cloud.google.com/monitoring/alerting/incidents/0.mtdi83m6w8ao" in text
    timeline = alert_bot.bot.store.timeline(1)
    assert timeline[0].kind == "alert" and timeline[0].at == started  # the timeline starts at the alert
    assert [a.alert_id for a in alert_bot.bot.store.alerts_of(1)] == ["0.mtdi83m6w8ao"]
    # The war room is named after the alert's policy, in whole words, not its summary sentence.
    room = alert_bot.slack.wait_for(lambda: alert_bot.bot.store.get(1).war_room_name)
    assert room == "inc-1-error-rate-5-for-2-min"


def test_the_same_alert_sent_three_times_makes_one_incident(alert_bot):
    payload = error_rate()
    with ThreadPoolExecutor(3) as pool:
        deliveries = list(pool.map(lambda _: send(cm_url(alert_bot), payload, token=ALERT_TOKEN), range(3)))

    assert [d.status for d in deliveries] == [202, 202, 202]
    assert sorted(o for d in deliveries for o in d.body["outcomes"]) == ["new", "repeat", "repeat"]
    message = announcement(alert_bot)
    # The repeats edit the group's one message in the thread (issue 18: no line per re-send).
    alert_bot.slack.wait_for(lambda: "1 firing, 0 closed (3 notifications" in thread_text(alert_bot, message))
    time.sleep(0.3)
    assert "Still firing" not in thread_text(alert_bot, message)
    assert len([m for m in alert_bot.slack.thread(ANNOUNCE, message.ts) if "1 firing" in m.all_text]) == 1
    assert alert_bot.bot.store.count_incidents() == 1
    announcements = [m for m in alert_bot.slack.top_level(ANNOUNCE) if "INC-" in m.all_text]
    assert len(announcements) == 1
    [record] = alert_bot.bot.store.alerts_of(1)
    assert record.notifications == 3


def test_propose_posts_the_alert_and_its_scenario_and_declare_clicked_twice_declares_once(alert_bot):
    assert send(cm_url(alert_bot), latency(), token=ALERT_TOKEN).status == 202
    proposal = alert_bot.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency", with_button="alert_declare")

    assert proposal.button("alert_declare")["text"] == "Declare P2"
    assert proposal.has_button("alert_dismiss")
    assert "Scenario 3" in proposal.all_text and "/incident runbook 3" in proposal.all_text
    assert "console.cloud.google.com/monitoring/alerting/incidents/0.nlatency42" in proposal.all_text
    assert alert_bot.bot.store.count_incidents() == 0

    button = proposal.button("alert_declare")
    with ThreadPoolExecutor(2) as pool:
        clicks = list(pool.map(lambda user: alert_bot.click(button, user=user), ["U0ALICE", "U0BOB"]))
    assert all(c.status == 200 for c in clicks)
    again = alert_bot.click(button, user="U0ALICE")
    again.wait_response(lambda r: "already declared" in r.text)

    alert_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    assert alert_bot.bot.store.count_incidents() == 1
    edited = alert_bot.slack.wait_for(lambda: "Declared as INC-1" in (m := current(alert_bot, proposal)).all_text and m)
    assert not edited.has_button("alert_declare")
    incident = alert_bot.bot.store.get(1)
    assert incident.severity == "P2" and incident.declared_by in {"U0ALICE", "U0BOB"}
    assert incident.detected_at is not None and incident.detected_at < incident.declared_at


def test_a_closed_alert_edits_its_proposal_to_resolved_by_itself(alert_bot):
    started = datetime.now(UTC) - timedelta(minutes=3)
    send(cm_url(alert_bot), latency(started=started), token=ALERT_TOKEN)
    alert_bot.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency", with_button="alert_declare")

    assert send(cm_url(alert_bot), latency("closed", started=started), token=ALERT_TOKEN).body["outcomes"] == ["closed"]

    proposal = alert_bot.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency")
    message = alert_bot.slack.wait_for(
        lambda: "Resolved by itself" in (m := current(alert_bot, proposal)).all_text and m
    )
    assert message.edited and not message.has_button("alert_declare")
    assert alert_bot.bot.store.count_incidents() == 0


def test_a_closed_alert_is_counted_closed_and_the_incident_suggested_for_resolving(alert_bot):
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)
    send(cm_url(alert_bot), error_rate(started=started), token=ALERT_TOKEN)
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: "Alert firing since" in thread_text(alert_bot, message))

    send(cm_url(alert_bot), error_rate("closed", started=started), token=ALERT_TOKEN)

    ended = started + timedelta(minutes=3)
    alert_bot.slack.wait_for(lambda: f"the last at {ended:%H:%M} UTC" in thread_text(alert_bot, message))
    closing = [m for m in alert_bot.slack.thread(ANNOUNCE, message.ts) if "has closed" in m.all_text][-1]
    assert "Every alert attached to INC-1 has closed" in closing.all_text
    assert closing.button("incident_resolve")["value"] == "1"
    alert_bot.slack.wait_for(lambda: "0 firing, 1 closed" in thread_text(alert_bot, message))
    room = alert_bot.bot.store.get(1).war_room_id
    alert_bot.slack.wait_for_message(room, "Every alert attached to INC-1 has closed")
    assert alert_bot.bot.store.get(1).is_open  # a suggestion: the bot never resolves by itself


def test_alertmanager_group_attaches_every_alert_to_one_incident_until_all_resolve(alert_bot):
    starts = datetime.now(UTC) - timedelta(seconds=30)
    first = alertmanager_alert(
        alertname="InstanceDown",
        fingerprint="1a30ba71cca2921f",
        starts_at=starts,
        labels={"instance": "a:9100"},
        summary="Instance a:9100 down",
    )
    second = alertmanager_alert(
        alertname="InstanceDown",
        fingerprint="bc97ff14869b13e3",
        starts_at=starts,
        labels={"instance": "b:9100"},
        summary="Instance b:9100 down",
    )
    delivery = send(am_url(alert_bot), alertmanager_notification([first, second]), token=ALERT_TOKEN, auth="bearer")

    assert delivery.status == 202 and delivery.body["outcomes"] == ["new", "new"]
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: thread_text(alert_bot, message).count("Alert firing since") == 2)
    assert alert_bot.bot.store.count_incidents() == 1
    assert len(alert_bot.bot.store.alerts_of(1)) == 2
    # The link is the alert's generatorURL (Prometheus), not an Alertmanager page.
    assert "open its source" in thread_text(alert_bot, message)
    assert "open in Alertmanager" not in thread_text(alert_bot, message)

    resolved_first = {**first, "status": "resolved", "endsAt": datetime.now(UTC).isoformat()}
    send(am_url(alert_bot), alertmanager_notification([resolved_first, second]), token=ALERT_TOKEN, auth="bearer")
    alert_bot.slack.wait_for(lambda: "InstanceDown*: 1 firing, 1 closed" in thread_text(alert_bot, message))
    assert "Every alert attached" not in thread_text(alert_bot, message)

    resolved_second = {**second, "status": "resolved", "endsAt": datetime.now(UTC).isoformat()}
    send(am_url(alert_bot), alertmanager_notification([resolved_second]), token=ALERT_TOKEN, auth="bearer")
    alert_bot.slack.wait_for(lambda: "Every alert attached to INC-1 has closed" in thread_text(alert_bot, message))


def test_dismiss_keeps_the_alert_recorded_and_declares_nothing(alert_bot):
    send(cm_url(alert_bot), latency(), token=ALERT_TOKEN)
    proposal = alert_bot.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency", with_button="alert_dismiss")

    # Dismissing an alert is a responder's call: someone with no on-call role is refused.
    refused = alert_bot.click(proposal.button("alert_dismiss"), user="U0ALICE")
    assert "may dismiss an alert" in refused.wait_response().text
    assert "Dismissed by" not in current(alert_bot, proposal).all_text
    alert_bot.click(proposal.button("alert_dismiss"), user="U0PRIMARY")
    alert_bot.slack.wait_for(lambda: "Dismissed by" in current(alert_bot, proposal).all_text)
    assert send(cm_url(alert_bot), latency(), token=ALERT_TOKEN).body["outcomes"] == ["repeat"]
    time.sleep(0.3)
    assert alert_bot.bot.store.count_incidents() == 0
    assert not alert_bot.slack.thread(ANNOUNCE, proposal.ts)[1:]  # no "still firing" under a dismissed one


@pytest.mark.parametrize(
    ("token", "auth"),
    [(None, "basic"), ("wrong-token", "basic"), ("wrong-token", "bearer"), ("wrong-token", "query"), ("", "bearer")],
    ids=["missing", "wrong-basic", "wrong-bearer", "wrong-query", "empty-bearer"],
)
def test_a_wrong_or_missing_token_gets_401_and_nothing_happens(alert_bot, token, auth):
    delivery = send(cm_url(alert_bot), error_rate(), token=token, auth=auth)

    assert delivery.status == 401
    time.sleep(0.3)
    assert alert_bot.bot.store.count_incidents() == 0
    assert alert_bot.bot.store.unsettled_alerts() == []
    assert not alert_bot.slack.calls_to("chat.postMessage")


@pytest.mark.parametrize("auth", ["basic", "bearer", "query"])
def test_the_token_is_accepted_in_each_form(alert_bot, auth):
    assert send(cm_url(alert_bot), latency(), token=ALERT_TOKEN, auth=auth).status == 202
    alert_bot.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency", with_button="alert_declare")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("cloud-monitoring", b'{"incident": {"incident_id": "0.x", ', 400),
        ("cloud-monitoring", b"\xff\xfe not json", 400),
        ("cloud-monitoring", b"[1, 2, 3]", 422),
        ("cloud-monitoring", b'{"version": "1.2"}', 422),
        ("cloud-monitoring", b'{"version": "1.2", "incident": {"policy_name": "x", "state": "open"}}', 422),
        ("alertmanager", b'{"version": "4", "status": "firing", "alerts": []}', 422),
        ("alertmanager", b'{"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]}', 422),
    ],
    ids=["truncated", "not-utf8", "array", "no-incident", "no-incident-id", "no-alerts", "no-fingerprint"],
)
def test_broken_json_and_missing_fields_get_4xx_and_nothing_happens(alert_bot, path, body, status):
    delivery = send(f"{alert_bot.base_url}/alerts/{path}", body, token=ALERT_TOKEN)

    assert delivery.status == status, delivery.body
    time.sleep(0.2)
    assert alert_bot.bot.store.unsettled_alerts() == []
    assert not alert_bot.slack.calls_to("chat.postMessage")


def test_a_two_megabyte_body_is_refused_and_nothing_happens(alert_bot):
    payload = error_rate()
    payload["incident"]["summary"] = "x" * 2_000_000
    try:
        status = send(cm_url(alert_bot), payload, token=ALERT_TOKEN).status
    except (ConnectionError, urllib.error.URLError):
        status = None  # refused before it was all sent: the connection can close under the sender
    assert status in (413, None)
    # The refusal comes from the headers alone: 413 before a byte of the body is read.
    connection = http.client.HTTPConnection("127.0.0.1", alert_bot.port, timeout=10)
    connection.putrequest("POST", "/alerts/cloud-monitoring")
    connection.putheader("Authorization", f"Bearer {ALERT_TOKEN}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 * 1024 * 1024))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()

    time.sleep(0.2)
    assert alert_bot.bot.store.count_incidents() == 0
    assert alert_bot.bot.store.unsettled_alerts() == []
    assert not alert_bot.slack.calls_to("chat.postMessage")


def test_without_an_alerts_section_the_endpoints_answer_404(bot):
    assert send(f"{bot.base_url}/alerts/cloud-monitoring", error_rate(), token=ALERT_TOKEN).status == 404
    assert send(f"{bot.base_url}/alerts/alertmanager", {}, token=ALERT_TOKEN).status == 404


def test_declaring_one_proposal_of_a_group_takes_its_waiting_groupmates_along(alert_bot):
    labels = {"service_name": "tai-autonomics", "team": "payments"}
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    alerts = [
        alertmanager_alert(
            alertname="HighLatency",
            fingerprint=fingerprint,
            starts_at=starts - timedelta(seconds=i * 30),
            labels={**labels, "instance": instance},
            summary=f"p95 above 1 s on {instance}",
        )
        for i, (fingerprint, instance) in enumerate([("aa11", "a:8080"), ("bb22", "b:8080")])
    ]
    send(am_url(alert_bot), alertmanager_notification(alerts), token=ALERT_TOKEN, auth="query")
    first = alert_bot.slack.wait_for_message(ANNOUNCE, "a:8080", with_button="alert_declare")
    # One Alertmanager notification is one proposal (issue 18): both alerts are listed in it.
    alert_bot.slack.wait_for(lambda: "b:8080" in current(alert_bot, first).all_text)
    assert len([m for m in alert_bot.slack.top_level(ANNOUNCE) if "HighLatency" in m.all_text]) == 1

    alert_bot.click(current(alert_bot, first).button("alert_declare"), user="U0ALICE")

    alert_bot.slack.wait_for(lambda: "Declared as INC-1 by <@U0ALICE>" in current(alert_bot, first).all_text)
    assert alert_bot.bot.store.count_incidents() == 1
    assert len(alert_bot.bot.store.alerts_of(1)) == 2
    assert alert_bot.bot.store.get(1).detected_at == starts - timedelta(seconds=30)  # the earlier of the two
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: thread_text(alert_bot, message).count("Alert firing since") == 2)


def test_a_proposal_slack_refused_is_posted_by_the_retry():
    with SandboxedBot(config_text=ALERTS_CONFIG, setup_retry_s=0.5) as running:
        running.slack.error("chat.postMessage", "fatal_error", times=1)
        assert send(cm_url(running), latency(), token=ALERT_TOKEN).status == 202

        proposal = running.slack.wait_for_message(ANNOUNCE, "Checkout p95 latency", with_button="alert_declare")
        time.sleep(1.2)  # two more retry rounds: the proposal is not posted again
        assert [m.ts for m in running.slack.top_level(ANNOUNCE) if "Checkout p95 latency" in m.all_text] == [
            proposal.ts
        ]


def test_without_the_token_the_endpoints_answer_404_and_only_post_is_served(alert_bot):
    statuses: list[str] = []
    environ = {
        "PATH_INFO": "/alerts/cloud-monitoring",
        "REQUEST_METHOD": "POST",
        "HTTP_AUTHORIZATION": "Bearer ",
        "CONTENT_LENGTH": "2",
        "wsgi.input": BytesIO(b"{}"),
    }
    webhook(alert_bot.bot.ctx, None)(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["404 Not Found"]

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(cm_url(alert_bot), method="GET"), timeout=5)
    assert refused.value.code == 405


def test_an_alert_recorded_before_a_restart_is_declared_once_at_start_up(tmp_path):
    slack = SlackSandbox(scopes=manifest_scopes()).start()
    db = str(tmp_path / "incident-bot.db")
    try:
        with SandboxedBot(config_text=ALERTS_CONFIG, db_path=db, slack=slack) as first:
            slack.error("auth.test", "fatal_error", times=100)  # the bot cannot learn who it is: no declare
            assert send(cm_url(first), error_rate(), token=ALERT_TOKEN).status == 202
            slack.wait_for(lambda: slack.calls_to("auth.test"))
            assert first.bot.store.count_incidents() == 0
        slack.clear_faults()

        with SandboxedBot(config_text=ALERTS_CONFIG, db_path=db, slack=slack) as second:
            slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
            time.sleep(0.3)
            assert second.bot.store.count_incidents() == 1
            assert [a.incident for a in second.bot.store.alerts_of(1)] == [1]
    finally:
        slack.stop()


def test_an_alert_declared_after_its_ack_target_says_so_once_and_warns_of_no_breach(alert_bot):
    # P1's ack target here is 3 s; the alert fired 20 s before it reached the bot. A breach
    # warning now would say "Paged so far: nobody yet" beside the page going out.
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    assert send(cm_url(alert_bot), error_rate(started=started), token=ALERT_TOKEN).status == 202
    alert_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: "ack target was already missed" in current(alert_bot, message).all_text)
    assert re.search(
        r"Declared 2\ds after the alert fired: the 3s ack target was already missed",
        current(alert_bot, message).all_text,
    )
    time.sleep(1.0)  # the warning, if any, would follow the page within milliseconds
    everything = [m.all_text for c in alert_bot.slack.conversations() for m in alert_bot.slack.messages_in(c.id)]
    assert not [t for t in everything if "SLA). Paged so far" in t]
    # The statistics still count from detection.
    assert alert_bot.bot.store.get(1).detected == started


def _group_of_30(status: str = "firing") -> dict:
    starts = datetime.now(UTC) - timedelta(minutes=1)
    alerts = [
        alertmanager_alert(
            alertname="InstanceDown",
            fingerprint=f"f{i:03d}",
            starts_at=starts,
            labels={"instance": f"host-{i}:9100"},
            summary=f"Instance host-{i}:9100 down",
        )
        for i in range(30)
    ]
    for alert in alerts[:4] if status == "some-resolved" else alerts if status == "all-resolved" else []:
        alert.update(status="resolved", endsAt=datetime.now(UTC).isoformat())
    return alertmanager_notification(alerts)


def test_a_30_alert_group_makes_one_incident_and_one_message_that_re_sends_edit(alert_bot):
    # Slack's rate limits are on (the sandbox default): the bot has to stay within them.
    assert send(am_url(alert_bot), _group_of_30(), token=ALERT_TOKEN, auth="bearer").status == 202
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: "InstanceDown*: 30 firing, 0 closed" in thread_text(alert_bot, message))
    assert alert_bot.bot.store.count_incidents() == 1
    assert len(alert_bot.bot.store.alerts_of(1)) == 30

    def posts_to_thread() -> int:
        # The alerts' posts in the thread (the thread also holds the war room's link).
        return len(
            [
                c
                for c in alert_bot.slack.calls_to("chat.postMessage")
                if c.params.get("thread_ts") == message.ts and "InstanceDown" in str(c.params.get("text"))
            ]
        )

    posted = posts_to_thread()
    assert posted == 1  # one group message, not a line per alert
    assert send(am_url(alert_bot), _group_of_30(), token=ALERT_TOKEN, auth="bearer").body["outcomes"] == ["repeat"] * 30
    alert_bot.slack.wait_for(lambda: "30 firing, 0 closed (60 notifications" in thread_text(alert_bot, message))
    time.sleep(0.3)
    assert posts_to_thread() == posted  # the re-send edited the message in place
    assert send(am_url(alert_bot), _group_of_30("some-resolved"), token=ALERT_TOKEN, auth="bearer").status == 202
    alert_bot.slack.wait_for(lambda: "26 firing, 4 closed" in thread_text(alert_bot, message), timeout=30)
    group_messages = [m for m in alert_bot.slack.thread(ANNOUNCE, message.ts) if "InstanceDown*:" in m.all_text]
    assert len(group_messages) == 1 and group_messages[0].edited
    # The 4 closings are counted in the group's message: no line of their own.
    assert posts_to_thread() == posted
    assert alert_bot.bot.store.count_incidents() == 1


def test_closing_4_of_30_alerts_posts_no_line_and_closing_all_posts_one_resolve_suggestion(alert_bot):
    assert send(am_url(alert_bot), _group_of_30(), token=ALERT_TOKEN, auth="bearer").status == 202
    message = announcement(alert_bot)
    alert_bot.slack.wait_for(lambda: "InstanceDown*: 30 firing, 0 closed" in thread_text(alert_bot, message))
    room = alert_bot.slack.wait_for(lambda: alert_bot.bot.store.get(1).war_room_id)

    assert send(am_url(alert_bot), _group_of_30("some-resolved"), token=ALERT_TOKEN, auth="bearer").status == 202

    alert_bot.slack.wait_for(lambda: "26 firing, 4 closed" in thread_text(alert_bot, message), timeout=30)
    alert_bot.slack.wait_for(lambda: not alert_bot.bot.store.unsettled_alerts(), timeout=15)
    assert not _closing_posts(alert_bot, room), "a closing posted a line of its own"

    assert send(am_url(alert_bot), _group_of_30("all-resolved"), token=ALERT_TOKEN, auth="bearer").status == 202

    alert_bot.slack.wait_for(lambda: "0 firing, 30 closed" in thread_text(alert_bot, message), timeout=30)
    alert_bot.slack.wait_for(lambda: not alert_bot.bot.store.unsettled_alerts(), timeout=15)
    alert_bot.slack.wait_for(lambda: len(_closing_posts(alert_bot, room)) >= 2, timeout=15)
    posts = _closing_posts(alert_bot, room)
    # One suggestion for the incident, in its thread and its war room: not one per group or alert.
    assert sorted(str(c.params.get("channel")) for c in posts) == sorted([ANNOUNCE, room]), posts
    assert all("Every alert attached to INC-1 has closed (all 30 alerts" in str(c.params["text"]) for c in posts)
    assert [c.params.get("thread_ts") for c in posts if c.params.get("channel") == ANNOUNCE] == [message.ts]
    assert alert_bot.bot.store.get(1).is_open  # a suggestion: the bot never resolves by itself


def _closing_posts(bot: SandboxedBot, room: str) -> list:
    """The posts about alerts closing in the incident's thread and war room (not the group's
    message, which counts them)."""
    return [
        c
        for c in bot.slack.calls_to("chat.postMessage")
        if c.ok
        and c.params.get("channel") in (ANNOUNCE, room)
        and any(said in str(c.params.get("text")) for said in ("Alert closed", "has closed"))
    ]


def test_a_30_alert_group_to_propose_makes_one_proposal_edited_and_dismissed_whole(alert_bot):
    starts = datetime.now(UTC) - timedelta(minutes=1)
    labels = {"service_name": "tai-autonomics", "team": "payments"}
    alerts = [
        alertmanager_alert(
            alertname="HighLatency",
            fingerprint=f"p{i:03d}",
            starts_at=starts,
            labels={**labels, "instance": f"host-{i}:8080"},
            summary=f"p95 above 1 s on host-{i}:8080",
        )
        for i in range(30)
    ]
    assert send(am_url(alert_bot), alertmanager_notification(alerts), token=ALERT_TOKEN, auth="bearer").status == 202
    proposal = alert_bot.slack.wait_for_message(ANNOUNCE, "HighLatency", with_button="alert_declare")
    alert_bot.slack.wait_for(lambda: "30 firing, 0 closed" in current(alert_bot, proposal).all_text, timeout=30)

    def proposals() -> list:
        return [m for m in alert_bot.slack.top_level(ANNOUNCE) if "HighLatency" in m.all_text]

    posts = len(alert_bot.slack.calls_to("chat.postMessage"))
    assert len(proposals()) == 1
    # The re-send edits the proposal: nothing is posted, in the channel or under the proposal.
    assert send(am_url(alert_bot), alertmanager_notification(alerts), token=ALERT_TOKEN, auth="bearer").status == 202
    alert_bot.slack.wait_for(lambda: "(60 notifications" in current(alert_bot, proposal).all_text, timeout=30)
    time.sleep(0.3)
    assert len(alert_bot.slack.calls_to("chat.postMessage")) == posts
    assert not alert_bot.slack.thread(ANNOUNCE, proposal.ts)

    alert_bot.click(current(alert_bot, proposal).button("alert_dismiss"), user="U0PRIMARY")
    alert_bot.slack.wait_for(lambda: "Dismissed by" in current(alert_bot, proposal).all_text)
    group = alert_bot.bot.store.proposal_alerts(ANNOUNCE, proposal.ts)
    assert len(group) == 30 and all(a.dismissed_by == "U0PRIMARY" for a in group)
    assert alert_bot.bot.store.count_incidents() == 0
