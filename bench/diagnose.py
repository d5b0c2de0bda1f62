"""Benchmark: does `/incident diagnose` take as long as its slowest source, and no longer?

Starts the GCP sandbox with the bad_deploy preset, delays every endpoint (Cloud Run get
0.2 s, revisions 0.3 s, Logging 0.4 s, health 0.5 s), runs the full diagnosis several times
and prints, per round, the total time next to the slowest single source of the same run,
and the Cloud Logging `entries:list` calls it made. The fan-out is good when total / slowest
stays at or under 1.15. Log reads are not shared between rounds (`log_share_s=0`): each
round pays for every call it would make alone.

    python bench/diagnose.py [--rounds 8] [--timeout 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bot.diagnose.fanout import diagnose
from bot.domain.triage import triage
from bot.google.cloud import CloudSources
from bot.sandbox.gcp_presets import GcpSandbox  # noqa: E402

TARGET_RATIO = 1.15
DELAYS = (  # (source, endpoint, seconds): the slowest known answer of each
    ("cloud_run", "services.get", 0.2),
    ("cloud_run", "revisions.list", 0.3),
    ("logging", "entries.list", 0.4),
    ("health", "health", 0.5),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args()

    with GcpSandbox() as sandbox:
        now = datetime.now(UTC)
        sandbox.use("bad_deploy", now)
        sources = CloudSources(sandbox.cloud_run_url, sandbox.logging_url, log_share_s=0)
        started = time.perf_counter()
        sources.warm_up()
        diagnose(sources, sandbox.service_ref, now, args.timeout)  # first-use costs, untimed
        print(f"warm-up (imports, clients, first calls): {time.perf_counter() - started:.2f} s")
        for source, endpoint, seconds in DELAYS:
            sandbox.delay(source, seconds, endpoint=endpoint)
        print("delays: " + ", ".join(f"{e} {s:.1f} s" for _, e, s in DELAYS))
        print(f"{'round':>5} {'total':>8} {'slowest':>8} {'source':>10} {'ratio':>6} {'log calls':>9}")
        ratios = []
        for round_no in range(1, args.rounds + 1):
            calls_before = sandbox.logging.calls
            report = diagnose(sources, sandbox.service_ref, now, args.timeout)
            log_calls = sandbox.logging.calls - calls_before
            if report.failed:
                print(f"round {round_no}: failed sources {[r.name for r in report.failed]}")
                return 2
            slowest = max(report.results, key=lambda r: r.elapsed_s)
            ratio = report.elapsed_s / slowest.elapsed_s
            ratios.append(ratio)
            print(
                f"{round_no:>5} {report.elapsed_s:>7.3f}s {slowest.elapsed_s:>7.3f}s {slowest.name:>10} {ratio:>6.3f}"
                f" {log_calls:>9}"
            )
        likely = triage(report, "P2").likely
        print(f"verdict of the last round: {likely.scenario if likely else 'none'}")
    median, worst = statistics.median(ratios), max(ratios)
    verdict = "OK" if median <= TARGET_RATIO else "TOO SLOW"
    print(f"ratio median {median:.3f}, worst {worst:.3f} (target <= {TARGET_RATIO}): {verdict}")
    return 0 if median <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
