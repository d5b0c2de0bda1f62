"""Benchmark: process start to the first answered `/incident help`, the bot vs a bare Bolt app.

What a person waits for when Cloud Run starts an instance for their command: from the moment
the process is spawned to the first 200 for a signed `/incident help` (the bot answers 503
until Slack has answered its `auth.test` and its timers are rebuilt, so that is included). The
bot (`incident-bot serve`, empty SQLite file, default config) and the bare Bolt app of
bench/bare_bolt.py start alternately (ABBA), each in a process of its own, each polled every
10 ms with a signed request; each start uses a fresh database.

Target: median bot / bare Bolt <= 1.5. The exit code is 0 whatever the ratio and 1 if a start
failed.

    python bench/cold_start.py [--starts 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ack_latency import Server  # noqa: E402

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402

TARGET_RATIO = 1.5
START_TIMEOUT_S = 30.0


def first_ack(server: Server, slack: SlackSandbox) -> float:
    """Seconds from the process's spawn to its first 200 for a signed `/incident help`."""
    platform = SlackPlatform(server.url, runner.SIGNING_SECRET, slack)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if platform.command("help").status == 200:
                return time.perf_counter() - server.started_at
        except OSError:  # the port is not open yet
            pass
        if server.process.poll() is not None:
            break
        time.sleep(0.01)
    raise RuntimeError(f"{server.name} never answered /incident help; see {server.log.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=6, help="starts per target")
    args = parser.parse_args()
    here = Path(__file__).resolve().parent
    argv = {
        "bot": [sys.executable, "-m", "bot.cli", "serve"],
        "baseline": [sys.executable, str(here / "bare_bolt.py")],
    }
    times: dict[str, list[float]] = {"bot": [], "baseline": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-cold-") as workdir,
        SlackSandbox(scopes=runner.manifest_scopes()) as slack,
    ):
        for i in range(-1, args.starts):  # start -1 is the warm-up: it fills the byte-code cache
            order = ["bot", "baseline"] if i % 2 == 0 else ["baseline", "bot"]
            for target in order:
                rundir = os.path.join(workdir, f"{target}{i}")
                os.mkdir(rundir)
                server = Server(target, argv[target], slack, rundir, wait_ready=False)
                try:
                    took = first_ack(server, slack)
                    if i >= 0:
                        times[target].append(took)
                finally:
                    server.stop()
    print(f"{'target':<9} {'starts':>6} {'median':>8} {'min':>8} {'max':>8}")
    for target, samples in times.items():
        print(
            f"{target:<9} {len(samples):>6} {statistics.median(samples):>7.2f}s {min(samples):>7.2f}s"
            f" {max(samples):>7.2f}s"
        )
    ratio = statistics.median(times["bot"]) / statistics.median(times["baseline"])
    state = "MET" if ratio <= TARGET_RATIO else "MISSED"
    print(f"target: cold start bot / bare Bolt (medians) <= {TARGET_RATIO}: {state} ({ratio:.2f}x)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
