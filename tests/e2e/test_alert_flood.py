"""A flood of alerts: the intake has a bounded queue of its own (full: 503 with Retry-After,
nothing recorded, the sender's re-send is taken), a person's declare is not queued behind it, and
Cloud Monitoring's "Test connection" makes nothing. Slack's limits are on (the sandbox's default)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from bot.alerts.webhook import RETRY_AFTER_S
from bot.sandbox.monitoring import (
    alertmanager_alert,
    alertmanager_notification,
    cloud_monitoring_notification,
    cloud_monitoring_test_notification,
    send,
)
from bot.sandbox.runner import ALERT_TOKEN, SandboxedBot
from bot.slack.pacing import Lane, Origin
from tests.conftest import FAST_CONFIG

ANNOUNCE = "C0INCIDENT"

PROPOSE_CONFIG = (
    FAST_CONFIG
    + """
alerts:
  default: {severity: P2, action: propose}
"""
)


DECLARE_CONFIG = (
    FAST_CONFIG
    + """
alerts:
  default: {severity: P2, action: declare}
"""
)


def alert(n: int) -> dict:
    return cloud_monitoring_notification(
        incident_id=f"0.flood{n}",
        policy=f"Flood policy {n}",
        started_at=datetime.now(UTC) - timedelta(seconds=30),
        summary=f"Alert number {n} is firing.",
    )


def cm(bot: SandboxedBot) -> str:
    return f"{bot.base_url}/alerts/cloud-monitoring"


def proposals(bot: SandboxedBot) -> list:
    return [m for m in bot.slack.top_level(ANNOUNCE) if m.has_button("alert_declare")]


def test_the_cloud_monitoring_test_notification_is_answered_and_makes_nothing():
    with SandboxedBot(config_text=PROPOSE_CONFIG) as running:
        answer = send(cm(running), cloud_monitoring_test_notification(), token=ALERT_TOKEN)

        assert answer.status == 200 and answer.body == {"test": True}
        assert running.bot.store.unsettled_alerts() == []
        assert running.bot.store.count_incidents() == 0
        # A real notification right after is handled as usual: nothing was wedged by the test.
        assert send(cm(running), alert(1), token=ALERT_TOKEN).status == 202
        running.slack.wait_for(lambda: proposals(running))
        assert len(proposals(running)) == 1 and "1970" not in proposals(running)[0].all_text


def test_a_full_alert_queue_answers_503_with_retry_after_and_the_resend_is_taken():
    with SandboxedBot(config_text=PROPOSE_CONFIG, alert_queue=2) as running:
        # The leader's start-up sweep of unsettled alerts is alert work too: let it finish first,
        # or it holds one of the two places when the notifications arrive.
        bot = running.bot
        running.slack.wait_for(
            lambda: (
                bot.leadership.leading
                and bot.timers.scheduler.get_job("setup-lapsed") is not None  # added after the sweep is queued
                and bot.alert_work.queued == 0
            )
        )
        running.slack.delay("chat.postMessage", seconds=1.5)  # each proposal holds its place a while
        assert send(cm(running), alert(1), token=ALERT_TOKEN).status == 202
        assert send(cm(running), alert(2), token=ALERT_TOKEN).status == 202

        full = send(cm(running), alert(3), token=ALERT_TOKEN)

        assert full.status == 503 and full.headers.get("Retry-After") == str(RETRY_AFTER_S)
        store = running.bot.store
        assert [store.alert(n) and store.alert(n).policy for n in (1, 2)] == ["Flood policy 1", "Flood policy 2"]
        assert store.alert(3) is None, "a refused notification was recorded"
        running.slack.wait_for(lambda: len(proposals(running)) == 2, timeout=15)
        running.slack.clear_faults()
        # The sender delivers again, later: taken, once.
        assert running.slack.wait_for(lambda: send(cm(running), alert(3), token=ALERT_TOKEN).status == 202)
        running.slack.wait_for(lambda: len(proposals(running)) == 3, timeout=15)
        assert len([m for m in proposals(running) if "Flood policy 3" in m.all_text]) == 1
        assert store.alert(3).policy == "Flood policy 3" and store.alert(4) is None


def test_a_persons_declare_is_announced_ahead_of_a_flood_of_alert_proposals():
    """Thirty proposals owed to one channel take Slack ~30 s at one post a second; a person's
    declare made meanwhile goes ahead of those still waiting (compared, not timed)."""
    with SandboxedBot(config_text=PROPOSE_CONFIG) as running:
        for n in range(30):
            assert send(cm(running), alert(n), token=ALERT_TOKEN).status == 202
        running.slack.wait_for(lambda: len(proposals(running)) >= 3)

        running.command("declare p3 Export button broken", user="U0ALICE")

        running.slack.wait_for_message(ANNOUNCE, "INC-1 ·")
        posted_before = len(proposals(running))
        print(f"\nthe person's announcement went out with {30 - posted_before} alert proposals still owed")
        assert posted_before <= 15, f"the announcement waited behind {posted_before} alert proposals"
        running.slack.wait_for_dm("U0SUPPORT", "You are paged")


def group(g: int, size: int) -> dict:
    """Alertmanager's notification for one group: `size` alerts sharing the alertname FloodG<g>."""
    starts = datetime.now(UTC) - timedelta(minutes=1)
    alerts = [
        alertmanager_alert(
            alertname=f"FloodG{g}",
            fingerprint=f"{g:02d}{i:04d}",
            starts_at=starts,
            labels={"instance": f"host-{i}:9100"},
            summary=f"host-{i} is down",
        )
        for i in range(size)
    ]
    return alertmanager_notification(alerts)


def am(bot: SandboxedBot) -> str:
    return f"{bot.base_url}/alerts/alertmanager"


def test_an_alert_group_is_one_job_and_one_edit_of_its_proposal_per_notification():
    """Five 20-alert groups against an intake that holds 10 jobs: each notification is one job
    (all taken), and its 19 joiners edit the proposal once, not 19 times (at Tier 3's 50 edits a
    minute, per-alert edits of ten 100-alert groups took minutes and kept the intake full)."""
    with SandboxedBot(config_text=PROPOSE_CONFIG, alert_queue=10) as running:
        answers = [send(am(running), group(g, 20), token=ALERT_TOKEN, auth="bearer").status for g in range(5)]

        assert answers == [202] * 5, "a notification of 20 alerts took 20 places in the intake"

        def shown(count: str) -> bool:
            texts = [m.all_text for m in proposals(running)]
            return len(texts) == 5 and all(count in t for t in texts)

        running.slack.wait_for(lambda: shown("20 firing, 0 closed"), timeout=30)
        assert len(running.slack.calls_to("chat.postMessage")) == 5  # one proposal per group
        assert len(running.slack.calls_to("chat.update")) <= 5, "the joiners edited the proposal one by one"

        # The re-send (Alertmanager's repeat): taken whole, one edit per group, nothing posted.
        assert [send(am(running), group(g, 20), token=ALERT_TOKEN, auth="bearer").status for g in range(5)] == [202] * 5
        running.slack.wait_for(lambda: shown("(40 notifications"), timeout=30)
        assert len(running.slack.calls_to("chat.postMessage")) == 5
        assert len(running.slack.calls_to("chat.update")) <= 10
        assert running.bot.store.count_incidents() == 0
        assert not running.slack.refusals(), running.slack.refusals()


def test_a_declared_alert_group_shows_its_alerts_in_one_message_edited_at_most_twice():
    """Three 20-alert groups with `action: declare`: three incidents, each with one group message
    that shows all 20, edited at most twice (the batch and the linking after the declare), not 19 times."""
    with SandboxedBot(config_text=DECLARE_CONFIG, alert_queue=6) as running:
        answers = [send(am(running), group(g, 20), token=ALERT_TOKEN, auth="bearer").status for g in range(3)]

        assert answers == [202] * 3
        store = running.bot.store
        running.slack.wait_for(lambda: store.count_incidents() == 3 and not store.unsettled_alerts(), timeout=30)

        def group_messages() -> list:
            return [
                m
                for m in running.slack.messages_in(ANNOUNCE)
                if m.is_reply and "20 firing, 0 closed" in m.all_text and "FloodG" in m.all_text
            ]

        running.slack.wait_for(lambda: len(group_messages()) == 3, timeout=30)
        posted = {m.ts for m in group_messages()}
        edits = [c for c in running.slack.calls_to("chat.update") if c.params.get("ts") in posted]
        assert len(edits) <= 6, f"{len(edits)} edits of 3 group messages"
        for number in (1, 2, 3):
            assert len(store.alerts_of(number)) == 20


def test_a_persons_announcement_during_a_flood_of_proposals_takes_the_token_alerts_leave():
    """Twenty proposals owed to one channel keep it busier than Slack's one post a second
    allows; a person's declare made meanwhile is announced without waiting for a token (an
    alert's call never takes a bucket's last one), ahead of the proposals still owed.
    Compared in one run: the proposals waited for the channel, the person's announcement did not."""
    with SandboxedBot(config_text=PROPOSE_CONFIG) as running:
        slack = running.slack
        for n in range(20):
            assert send(cm(running), alert(n), token=ALERT_TOKEN).status == 202
        slack.wait_for(lambda: len(proposals(running)) >= 7, timeout=20)  # past the channel's burst

        running.command("declare p3 Export button broken", user="U0ALICE")

        announced = slack.wait_for_message(ANNOUNCE, "INC-1 ·", timeout=20)
        slack.wait_for(lambda: [m for m in proposals(running) if float(m.ts) > float(announced.ts)], timeout=20)
        channel = ("incident-response", ANNOUNCE)
        posts = [w for w in running.bot.pacer.waits if w.method == "chat.postMessage" and w.channel in channel]
        assert [w for w in posts if w.origin == Origin.ALERT], "the proposals never waited: no contention"
        mine = [w for w in posts if w.origin == Origin.PERSON and w.lane == Lane.ANNOUNCE]
        assert not mine, f"the person's announcement waited: {mine}"


def test_alert_incidents_are_all_paged_before_their_war_rooms_are_made():
    """Twelve alert groups with `action: declare`, each a P2 with a war room: war rooms go at
    Slack's Tier 2 (about one every 3 s after a burst of 4), pages at one a second in the
    primary's DM. Every alert incident is committed and paged at once, its set-up following as
    a job of its own: all twelve pages are posted before the 8th war room exists. (When the
    set-up ran on the thread that declared, the 4 alert threads waited on war rooms 5-8 before
    the 12th group was declared at all.)"""
    with SandboxedBot(config_text=DECLARE_CONFIG) as running:
        slack = running.slack
        for g in range(12):
            assert send(am(running), group(g, 1), token=ALERT_TOKEN, auth="bearer").status == 202
        primary_dm = slack.wait_for_dm("U0PRIMARY", "You are paged", timeout=20).channel

        def pages() -> list:  # the primary's (the P2 path pages the secondary too, 2 s later)
            return [
                c
                for c in slack.calls_to("chat.postMessage")
                if c.ok and c.response.get("channel") == primary_dm and "You are paged" in str(c.params.get("text"))
            ]

        def paged_at() -> dict[str, float]:
            """When each incident was first paged: pages that pile up go as one digest naming them all."""
            first: dict[str, float] = {}
            for call in pages():
                for ref in re.findall(r"INC-\d+", str(call.params.get("text"))):
                    first.setdefault(ref, call.at)
            return first

        slack.wait_for(lambda: len(paged_at()) == 12, timeout=60)
        slack.wait_for(lambda: len([c for c in slack.calls_to("conversations.create") if c.ok]) >= 8, timeout=60)
        rooms = sorted(c.at for c in slack.calls_to("conversations.create") if c.ok)
        last_page = max(paged_at().values())
        assert last_page < rooms[7], f"the last page went {last_page - rooms[7]:.1f} s after the 8th war room"
        assert running.bot.store.count_incidents() == 12
