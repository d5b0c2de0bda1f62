"""`incident-bot demo`: a scripted P1 against the built-in sandbox, printed as Slack would show it.

Everything is real except Slack and Google: the bot runs under waitress, receives signed
requests, and calls the sandbox's Slack Web API, Cloud Run, Cloud Logging and health
emulators through the real clients. Durations are shortened so escalation fits in seconds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from bot.config import default_config_text
from bot.core.durations import humanize
from bot.domain.pagerduty import dedup_key
from bot.sandbox.monitoring import cloud_monitoring_notification, send
from bot.sandbox.pagerduty import API_TOKEN, ROUTING_KEY, PagerDutySandbox
from bot.sandbox.runner import ALERT_TOKEN, SandboxedBot
from bot.sandbox.slack.transcript import render

# The runbook's config, with minutes turned into seconds so the demo shows escalation.
DEMO_CONFIG = (
    default_config_text()
    .replace("{after: 10m, page: [oncall_secondary]}", "{after: 3s, page: [oncall_secondary]}")
    .replace("{after: 20m, page: [vp_product]}", "{after: 60s, page: [vp_product]}")
    .replace("{after: 30m, page: [ceo]}", "{after: 90s, page: [ceo]}")
    .replace("update_every: 15m", "update_every: 4s")
    .replace("  window: 5m", "  window: 6s")
    .replace("  every: 30s", "  every: 2s")
    + """
alerts:
  default: {severity: P2, action: propose}
  rules:
    - {match: {policy: "Error rate*"}, severity: P1, action: declare}
pagerduty:
  routing_key_env: INCIDENT_BOT_DEMO_PD_ROUTING_KEY
  severities: [P1, P2]
  webhook_secret_env: INCIDENT_BOT_DEMO_PD_WEBHOOK_SECRET
  api_token_env: INCIDENT_BOT_DEMO_PD_API_TOKEN
"""
)
# The demo's PagerDuty: the sandbox's integration key, webhook secret and REST token, and the
# primary on-call as a PagerDuty user with the same email as in Slack.
DEMO_PD_ENV = {
    "INCIDENT_BOT_DEMO_PD_ROUTING_KEY": ROUTING_KEY,
    "INCIDENT_BOT_DEMO_PD_WEBHOOK_SECRET": "demo-pagerduty-webhook-secret",
    "INCIDENT_BOT_DEMO_PD_API_TOKEN": API_TOKEN,
}


# Lines in the war room arrive at Slack's pace (about one a second per channel, limits on).
ROOM_S = 15


def run_demo(db_path: str | None = None, out: TextIO | None = None) -> int:
    stream = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    os.environ.update(DEMO_PD_ENV)
    with (
        PagerDutySandbox() as pd,
        SandboxedBot(config_text=DEMO_CONFIG, db_path=db_path, preset="bad_deploy", pagerduty=pd) as world,
    ):
        assert world.bot is not None
        slack, store = world.slack, world.bot.store
        pd.subscribe(world.pagerduty_webhook_url, (DEMO_PD_ENV["INCIDENT_BOT_DEMO_PD_WEBHOOK_SECRET"],))
        pd.add_user("PPRIMARY", "Pat Primary", "primary@example.com")
        # Requests keep arriving (Cloud Monitoring counts them), 45% of them 5xx while 00043 serves.
        world.gcp.start_live()
        say("▶ @alice: /incident declare p1 Checkout returns 500")
        reply = world.command("declare p1 Checkout returns 500", user="U0ALICE")
        say(f"  ack ({reply.elapsed * 1000:.0f} ms): {reply.text}")
        page = slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
        room: str = slack.wait_for(lambda: (incident := store.get(1)) and incident.war_room_id or "")
        slack.wait_for_message(room, "first steps", timeout=ROOM_S)
        say("  → announcement in #incident-response, war room opened and briefed, primary on-call paged")
        trigger = slack.wait_for(lambda: pd.accepted("trigger"))[0]
        say(
            f"  → PagerDuty: trigger accepted (202), severity {trigger['payload']['severity']},"
            f" {trigger['payload']['summary']!r}, dedup_key {trigger['dedup_key']}"
        )

        say("▶ @bob: /incident list")
        say("  " + world.command("list", user="U0BOB").text)

        say("▶ (nobody acknowledges for 3 s: the secondary on-call is paged)")
        slack.wait_for_dm("U0SECOND", "You are paged")

        say("▶ @primary presses [Acknowledge] on the page")
        world.click(page.button("incident_ack"), user="U0PRIMARY")
        slack.wait_for_dm("U0SECOND", "You can stand down")
        say("  → escalation stopped; the secondary is told to stand down")
        slack.wait_for(lambda: pd.accepted("acknowledge"))
        say("  → PagerDuty: acknowledge accepted (202), same dedup_key: its phone calls stop too")

        say("▶ (no update for 4 s: the bot reminds the commander in the war room)")
        reminder = slack.wait_for_message(room, "has had no update", with_button="reminder_snooze_30m")
        say("▶ @alice presses [Snooze 30 min] on the reminder")
        world.click(reminder.button("reminder_snooze_30m"), user="U0ALICE", channel=room)
        slack.wait_for_message(room, "snoozed by", timeout=ROOM_S)

        say("▶ @primary in the war room: /incident diagnose")
        world.command("diagnose", user="U0PRIMARY", channel=room)
        summary = slack.wait_for_message(room, "Diagnosis ·", timeout=20)

        say("▶ @primary: /incident update identified Bad deploy 00043; rolling back to 00042")
        world.command(
            "update identified Bad deploy 00043; rolling back to 00042",
            user="U0PRIMARY",
            channel=room,
        )
        slack.wait_for_message(room, "rolling back to 00042", timeout=ROOM_S)

        say("▶ @primary presses [Roll back to …00042…] on the diagnosis")
        world.click(summary.button("rollback_propose"), user="U0PRIMARY", channel=room)
        proposal = slack.wait_for_message(room, "proposed by", with_button="rollback_confirm")
        say("  → proposal in the war room: traffic now, the target revision, who may confirm")
        # The old revision's instances take a moment to start, so the first probes still fail.
        world.gcp.warmup_s = 1.5
        say("▶ @lead presses [Roll back] and confirms the dialog")
        world.click(proposal.button("rollback_confirm"), user="U0LEAD", channel=room)
        done = slack.wait_for(
            lambda: next(
                (m for m in slack.messages_in(room) if m.ts == proposal.ts and "Health:" in m.all_text),
                None,
            ),
            timeout=30,
        )
        health = next((line for line in done.all_text.splitlines() if "Health:" in line), "")
        say(f"  → traffic moved; {health.strip('*').replace('*', '')}")
        held = slack.wait_for_message(room, "ready to resolve", timeout=30)
        series = [line.strip("• ") for line in held.all_text.splitlines() if line.startswith("• ")]
        say(f"  → VERIFY: watched 6 s (every 2 s), Cloud Monitoring: {'; '.join(series)}; held, ready to resolve")

        say("▶ @primary: /incident note Traffic back on 00042; error rate falling")
        world.command("note Traffic back on 00042; error rate falling", user="U0PRIMARY", channel=room)

        say("▶ @primary presses [Resolve] on the announcement and fills in the form")
        announcement = slack.wait_for_message("C0INCIDENT", "INC-1 ·", with_button="incident_resolve")
        world.click(announcement.button("incident_resolve"), user="U0PRIMARY")
        form = slack.wait_for_view("resolve_modal")
        world.platform.submit_view(
            form,
            {
                "resolve_summary": "Rolled back to 00042; error rate back under 1%",
                "root_cause": "Revision 00043 went live with a bad config and failed every checkout",
                "customer_impact": "Checkout failed for every customer until the rollback",
            },
            user="U0PRIMARY",
        )
        slack.wait_for_message(room, "All clear", timeout=ROOM_S)
        say("  → the all-clear in the war room and under the announcement; timers stopped")
        slack.wait_for(lambda: pd.accepted("resolve"))
        say("  → PagerDuty: resolve accepted (202)")
        upload = slack.wait_for(lambda: slack.uploaded_files())[0]
        say(f"  → post-mortem draft uploaded to the war room as {upload.name}")
        slack.wait_for(lambda: (draft := store.draft(1)) and draft.file_id)

        _alert_scene(world, pd, say)

        say("\n▶ @alice: /incident stats 30d")
        stats_line = world.command("stats 30d", user="U0ALICE").text
        time.sleep(0.3)  # let the last edits land before printing

        say("\n" + "═" * 100 + "\nWhat Slack shows\n" + "═" * 100)
        say(render(slack))
        say(
            "\n"
            + "═" * 100
            + f"\nThe post-mortem draft ({upload.name}, also `incident-bot postmortem INC-1`)\n"
            + "═" * 100
        )
        say((upload.content or b"").decode("utf-8"))
        say("═" * 100 + "\nStats\n" + "═" * 100)
        say(stats_line)
        refused = slack.refusals()
        if refused:
            say(f"\n✗ Slack refused {len(refused)} call(s): {[c.method + ':' + str(c.error) for c in refused]}")
            return 1
        say("\n✓ Every message the bot sent was accepted by the sandbox's Slack.")
    return 0


def _alert_scene(world: SandboxedBot, pd: PagerDutySandbox, say: Callable[[str], None]) -> None:
    """An incident that starts from a Cloud Monitoring alert instead of a typed declare, and is
    acknowledged from PagerDuty's side (the round trip: trigger out, signed webhook back in)."""
    assert world.bot is not None
    slack, store = world.slack, world.bot.store
    url = f"{world.base_url}/alerts/cloud-monitoring"
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)
    firing = cloud_monitoring_notification(
        incident_id="0.demo-error-rate",
        policy="Error rate > 5% for 2 min",
        started_at=started,
        summary="Error rate for tai-autonomics is above the threshold of 0.05 with a value of 0.124.",
    )
    say("\n▶ Cloud Monitoring: the policy 'Error rate > 5% for 2 min' fires (webhook to /alerts/cloud-monitoring)")
    before = time.monotonic()
    delivery = send(url, firing, token=ALERT_TOKEN)
    say(f"  answered {delivery.status} in {(time.monotonic() - before) * 1000:.0f} ms; the rule says: declare P1")
    page = slack.wait_for_dm("U0PRIMARY", "Error rate", with_button="incident_ack")
    number = max(i.number for i in store.open_incidents())
    say(f"  → INC-{number} declared by the bot, detected at the alert's start, announced, primary paged")

    say("▶ Cloud Monitoring sends the same alert again")
    send(url, firing, token=ALERT_TOKEN)
    incident = store.get(number)
    assert incident is not None and incident.announcement_ts
    slack.wait_for(
        lambda: any(
            "1 firing, 0 closed (2 notifications" in m.all_text
            for m in slack.thread("C0INCIDENT", incident.announcement_ts or "")
        )
    )
    say(f"  → no second incident: INC-{number}'s alert-group message is edited ('1 firing, 0 closed')")

    key = dedup_key(incident)
    slack.wait_for(lambda: pd.alert(key))
    say("▶ @primary's phone rings (PagerDuty); they acknowledge in the PagerDuty app")
    answers = pd.acknowledge(key, "PPRIMARY")
    say(f"  PagerDuty sends the signed v3 webhook incident.acknowledged; the bot answers {answers[0]}")
    slack.wait_for(lambda: (i := store.get(number)) is not None and i.acknowledged_at is not None)
    slack.wait_for(
        lambda: not any(m.ts == page.ts and m.has_button("incident_ack") for m in slack.messages_in(page.channel)),
        timeout=10,
    )
    acked = store.get(number)
    assert acked is not None and acked.time_to_acknowledge is not None
    say(
        f"  → acknowledged in Slack as <@{acked.acknowledged_by}> (their PagerDuty email), escalation stopped,"
        " the page's button gone"
    )
    say(f"  → time to acknowledge {humanize(acked.time_to_acknowledge)}, measured from the alert, as the runbook does")

    say("▶ the alert closes in Cloud Monitoring")
    closed = cloud_monitoring_notification(
        incident_id="0.demo-error-rate",
        policy="Error rate > 5% for 2 min",
        state="closed",
        started_at=started,
        ended_at=datetime.now(UTC),
    )
    send(url, closed, token=ALERT_TOKEN)
    slack.wait_for_message(acked.war_room_id or "C0INCIDENT", "Every alert attached")
    say(
        f"  → counted closed in INC-{number}'s alert-group message; every alert closed: one line in its thread and"
        " war room suggests resolving (never automatic)"
    )
