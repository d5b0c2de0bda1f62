"""Ten SIGKILLs of `incident-bot serve` at random moments of a scripted P1: nothing lost, nothing twice.

The bot is a real subprocess; Slack and the Google emulators live in this process, so they
outlive every bot process and record every call each one made. The kill moments are seeded:
the seed is printed, and `CRASH_SEED=<seed>` replays a run.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from tests.p1_script import ScriptedP1, audit, p1_config
from tests.restarts.test_restart import BotProcess

KILLS = 10
# Slack's own latency, roughly: every call takes a little while, so a kill can fall mid-call.
SLACK_LATENCY_S = 0.03


def test_ten_kills_during_a_p1_lose_nothing_and_send_nothing_twice(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"\nCRASH_SEED={seed}")
    rng = random.Random(seed)
    started = time.monotonic()
    with SlackSandbox() as slack, GcpSandbox() as gcp:
        gcp.use("bad_deploy")
        slack.delay("*", SLACK_LATENCY_S)
        bot = BotProcess(tmp_path, slack)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(p1_config(gcp.project, gcp.health_url), encoding="utf-8")
        bot.env.update(gcp.env())
        script = ScriptedP1(slack, lambda: SlackPlatform(bot.url, SIGNING_SECRET, slack), reask_lost_proposal=True)
        steps = script.steps()
        # Ten of the steps, each followed by a kill a random moment after its request was acked
        # (mid-set-up, mid-send, mid-rollback, mid-upload: whatever that work is doing then), or,
        # for the timers' steps, a random moment in the seconds around when the timer comes due.
        chosen = rng.sample(range(len(steps)), KILLS)
        plan = {steps[i][0]: rng.uniform(0.0, 0.6 if steps[i][1] else 2.5) for i in chosen}
        kills: list[float] = []

        def kill_maybe(name: str) -> None:
            if name not in plan:
                return
            time.sleep(plan[name])
            kills.append(time.time())
            bot.kill()
            script.log.append(f"  killed {plan[name]:.2f} s into {name}")
            bot.start()

        script.after_step = kill_maybe
        try:
            bot.start()
            script.run()
            # Let the last restart finish what it owes before counting.
            time.sleep(2.0)
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()
        result = audit(slack, bot.env["INCIDENT_BOT_DB"], kills, len(gcp.cloud_run.patches()))
    elapsed = time.monotonic() - started
    print("\n".join(script.log))
    print(result.report())
    print(f"kills: {len(kills)}; proposals asked for again after a kill: {script.reasked}; run time {elapsed:.1f} s")
    assert len(kills) == KILLS
    assert not result.missing, f"seed {seed}: {result.missing}\n{slack.dump(40)}"
    assert not result.duplicates, f"seed {seed}: {result.duplicates}"
    assert not result.keyed_repeats, f"seed {seed}: a metadata lookup should have caught {result.keyed_repeats}"
    assert len(result.unknown_repeats) <= KILLS
