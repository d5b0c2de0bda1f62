"""The runbook's VERIFY step done by the bot (issue 20), end to end: a confirmed rollback starts a
watch; the real Cloud Monitoring client (gRPC) reads the sandbox's request metrics, fed by live
traffic that follows what the service serves; one message is edited in place; the verdict is
"Held … ready to resolve" with the Resolve button, or "Regressed at +Ns" with the commander told."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bot.domain import postmortem
from bot.review import drafts
from bot.sandbox.runner import SandboxedBot
from tests.e2e.test_rollback import COMMANDER, CONFIG, LEAD, declare, finished, propose

# The runbook's config with a verify window of seconds: 4 s, a sample every second.
FAST = CONFIG.replace("  window: 5m", "  window: 4s").replace("  every: 30s", "  every: 1s")
BASELINE_THEN_CLEAN = re.compile(r"5xx [1-9]\d?% → 0%")  # the bad deploy's rate as the fix landed, then none


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    assert "window: 4s" in FAST and "every: 1s" in FAST
    with SandboxedBot(config_text=FAST, preset="bad_deploy") as world:
        world.gcp.start_live()
        yield world
        assert not world.slack.refusals(), f"Slack refused: {world.slack.refusals()}"


def roll_back(running: SandboxedBot) -> str:
    room = declare(running)
    proposal = propose(running, room)
    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)
    finished(running, room, proposal.ts, "succeeded")
    return room


def watch_message(running: SandboxedBot, room: str, contains: str, timeout: float = 15):
    return running.slack.wait_for_message(room, contains, timeout=timeout)


def test_verify_holds_after_a_good_rollback_and_offers_resolve(running):
    room = roll_back(running)

    held = watch_message(running, room, "Held for 4s")
    text = held.all_text
    assert "ready to resolve" in text and held.has_button("incident_resolve")
    assert BASELINE_THEN_CLEAN.search(text), text  # the baseline as the fix landed, then the samples since
    assert "health 200" in text and "p95 120 ms" in text
    assert "Requests from Cloud Monitoring" in text
    [watch] = running.bot.store.watches()
    # +0s, +1s … +4s (a sample late under load takes the slots it missed as one)
    assert watch.status == "held" and 3 <= len(watch.samples) <= 5 and watch.samples[-1].offset_s >= 4
    assert [m.ts for m in running.slack.messages_in(room) if ":mag: Verify*" in m.all_text] == [held.ts]  # one message
    kinds = [e.kind for e in running.bot.store.timeline(1)]
    assert "verify-started" in kinds and kinds.count("verify-held") == 1
    assert running.gcp.monitoring.calls >= 2 * len(watch.samples)  # two timeSeries.list calls a sample

    bot = running.bot
    draft = postmortem.render(drafts.facts(bot.config, bot.store, bot.store.get(1), bot.ctx.now()))
    assert re.search(r"Time to mitigate\*\*: .*\(mitigated at \d\d:\d\d:\d\d, verified at \d\d:\d\d:\d\d\)", draft)


def test_verify_reports_a_regression_when_the_5xx_rate_climbs_back(running):
    room = roll_back(running)
    watch_message(running, room, "of 4s: within the thresholds so far")  # watching, none over yet
    running.gcp.set_live(error_rate=0.12)  # the bad code path comes back mid-window

    regressed = watch_message(running, room, "Regressed at")
    # About 12% (a one-second sample of ~40 requests rounds to 10-15%): over the 1% threshold.
    assert re.search(r"Regressed at \+\d+s\*: 5xx 1\d%", regressed.all_text), regressed.all_text
    assert not regressed.has_button("incident_resolve")
    told = running.slack.wait_for_message(room, "the fix did not hold")
    assert f"<@{COMMANDER}>" in told.text and told.ts != regressed.ts
    [watch] = running.bot.store.watches()
    assert watch.status == "regressed"
    kinds = [e.kind for e in running.bot.store.timeline(1)]
    assert kinds.count("verify-regressed") == 1 and "verify-held" not in kinds


def test_verify_with_cloud_monitoring_down_counts_the_request_log_and_says_so(running):
    running.gcp.fail("monitoring", 503)
    room = roll_back(running)

    held = watch_message(running, room, "Held for 4s")
    assert "Requests from Cloud Logging" in held.all_text
    assert "Cloud Monitoring failed (UNAVAILABLE" in held.all_text
    assert BASELINE_THEN_CLEAN.search(held.all_text), held.all_text


def test_verify_on_demand_and_bad_input(running):
    room = declare(running)
    bad = running.command("verify soon", user=LEAD, channel=room)
    assert "not a duration" in bad.text and "Usage:" in bad.text
    long = running.command("verify 3h", user=LEAD, channel=room)
    assert "between 1s and 1h" in long.text
    assert not running.bot.store.watches()

    reply = running.command("verify 2s", user=LEAD, channel=room)
    assert reply.text.startswith("Verifying tai-autonomics for 2s")
    regressed = watch_message(running, room, "Regressed at")  # the bad deploy still serves: 45% 5xx
    assert re.search(r"Regressed at \+1s\*: 5xx 4\d%, health 503", regressed.all_text), regressed.all_text
    assert f"asked by <@{LEAD}>" in regressed.all_text


def test_a_watch_stops_when_the_incident_resolves():
    config = FAST.replace("  window: 4s", "  window: 30s")
    with SandboxedBot(config_text=config, preset="healthy") as running:
        running.gcp.start_live()
        room = declare(running)
        running.command("verify", user=LEAD, channel=room)
        watch_message(running, room, "of 30s: within the thresholds so far")
        running.command("resolve Fine", user=COMMANDER, channel=room)
        watch_message(running, room, "Stopped")
        [watch] = running.bot.store.watches()
        assert watch.status == "stopped"


def test_a_rollback_during_an_on_demand_watch_replaces_it():
    config = FAST.replace("  window: 4s", "  window: 30s")
    with SandboxedBot(config_text=config, preset="healthy") as running:
        running.gcp.start_live()
        room = declare(running)
        running.command("verify 30s", user=LEAD, channel=room)
        running.slack.wait_for(lambda: running.bot.store.watches() or None, what="the first watch")
        proposal = propose(running, room)
        running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)
        finished(running, room, proposal.ts, "succeeded")
        watch_message(running, room, "a newer watch replaced it")
        # The old watch is stopped (and says so) before the new one is written: wait for both.
        first, second = running.slack.wait_for(
            lambda: (watches := running.bot.store.watches()) and len(watches) == 2 and watches, what="two watches"
        )
        assert (
            first.status == "stopped"
            and second.status == "watching"
            and second.proposal == running.bot.store.proposals()[-1].id
        )
