"""Benchmark: does PagerDuty being down delay the Slack page?

Runs the real bot in-process (`SandboxedBot`: waitress, the Slack sandbox) with a `pagerduty:`
block pointed at the PagerDuty emulator, and declares P1s one after another, alternating
PagerDuty up and PagerDuty hanging (it takes the connection and never answers: the client waits
for its timeout, the worst kind of down), after one warm-up declare. For each declare, the time
to page is from just before the slash command is sent to the moment the page DM is in the
sandbox. Both sets come from the same run, interleaved, so the machine's load hits both alike.

Target: the median time to page with PagerDuty down is within 20% (or 50 ms) of the median with
it up, and every trigger made while it was down reaches PagerDuty once it is back. The exit code
is 0 whatever the figures (it is a measurement) and 1 if a page or a trigger never came.

    python bench/pagerduty_down.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bot.domain.pagerduty import dedup_key  # noqa: E402
from bot.sandbox.pagerduty import API_TOKEN, ROUTING_KEY, PagerDutySandbox  # noqa: E402
from bot.sandbox.runner import SandboxedBot  # noqa: E402

CONFIG = """
channel: incident-response
people: {oncall_primary: [U0PRIMARY], support: [U0SUPPORT]}
severities:
  P1: {label: Critical, escalation: [{after: 0s, page: [oncall_primary]}]}
  P2: {label: High, escalation: [{after: 0s, page: [oncall_primary]}]}
  P3: {escalation: [{after: 0s, page: [support]}]}
  P4: {escalation: [{after: 0s, page: [support]}]}
service: {project: bench, region: us-central1, name: tai-autonomics, health_url: "http://127.0.0.1:9/health"}
pagerduty: {routing_key_env: BENCH_PD_KEY, webhook_secret_env: BENCH_PD_SECRET, api_token_env: BENCH_PD_TOKEN}
"""
TOLERANCE = 0.2
SLACK_S = 0.05


def time_to_page(world: SandboxedBot, number: int) -> float:
    started = time.monotonic()
    world.command(f"declare p1 Bench incident {number}", user="U0ALICE")
    world.slack.wait_for(
        lambda: [m for m in world.slack.dms_to("U0PRIMARY") if f"INC-{number}" in m.all_text],
        timeout=30,
    )
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10, help="declares with PagerDuty up, and as many down")
    args = parser.parse_args()
    os.environ.update(BENCH_PD_KEY=ROUTING_KEY, BENCH_PD_SECRET="bench-secret", BENCH_PD_TOKEN=API_TOKEN)
    up: list[float] = []
    down: list[float] = []
    with PagerDutySandbox() as pd, SandboxedBot(config_text=CONFIG, pagerduty=pd) as world:
        assert world.bot is not None and world.bot.pagerduty is not None
        world.bot.pagerduty.timeout = 1.0
        time_to_page(world, 1)  # warm-up: the process's first declare pays for cold caches
        number = 2
        downed: list[int] = []
        for _ in range(args.rounds):
            up.append(time_to_page(world, number))
            number += 1
            pd.hang()
            down.append(time_to_page(world, number))
            downed.append(number)
            number += 1
            pd.heal()
        keys = []
        for n in downed:
            incident = world.bot.store.get(n)
            assert incident is not None
            keys.append(dedup_key(incident))
        try:
            world.slack.wait_for(lambda: all(pd.alert(k) for k in keys), timeout=60)
        except AssertionError:
            print("FAILED: a trigger made while PagerDuty was down never reached it")
            return 1
        landed = len([k for k in keys if pd.alert(k)])
    median_up, median_down = statistics.median(up), statistics.median(down)
    print(f"time to page (P1 declares, {args.rounds} each, interleaved in one run):")
    print(f"  PagerDuty up:      median {median_up * 1000:.0f} ms, max {max(up) * 1000:.0f} ms")
    print(f"  PagerDuty hanging: median {median_down * 1000:.0f} ms, max {max(down) * 1000:.0f} ms")
    print(f"  triggers made while PagerDuty was down that reached it once back: {landed}/{len(keys)}")
    met = median_down <= max(median_up * (1 + TOLERANCE), median_up + SLACK_S)
    print(f"verdict: PagerDuty down {'does not delay' if met else 'DELAYS'} the Slack page (target met: {met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
