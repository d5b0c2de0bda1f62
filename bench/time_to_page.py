"""Benchmark: how long from `/incident declare` to the on-call's page reaching Slack?

Starts the Slack sandbox in this process and the real bot as `incident-bot serve` (waitress,
32 threads, default config, its own SQLite file) in a process of its own, as ack_latency.py
does. Then declares incidents: one at a time (alone), and in rounds of 32 and 128 concurrent
declares released together by a barrier. For each declare, the time to page is from the
moment its request left (wall clock, just before the HTTP request) to the moment the sandbox
answered the `chat.postMessage` that carried "You are paged: INC-n" (the sandbox records each
call with the wall-clock time it answered it), so it covers the ack, the set-up the page waits
for (a P1 opens and briefs its war room first, so the page can point at it) and the delivery
loop. Each round is left to finish (every page sent) before the next starts.

Target: p99 <= 1 s under 32 concurrent declares. The exit code is 0 whatever the figures (it is
a measurement) and 1 if a declare was not acked or its page never came.

    python bench/time_to_page.py [--severity p1] [--alone 10] [--concurrency 32 128] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ack_latency import Server, percentile  # noqa: E402

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402

TARGET_P99_S = 1.0
TARGET_CONCURRENCY = 32
PAGE_TIMEOUT_S = 60.0
# A page alone ("You are paged: INC-3 (P1 ...") or a page digest ("You are paged: INC-4, INC-5 (2 incidents)").
PAGED = re.compile(r"You are paged: (INC-\d+(?:, INC-\d+)*)")


def page_times(slack: SlackSandbox) -> dict[int, float]:
    """Incident number -> wall-clock time the sandbox answered its first page (a DM post)."""
    first: dict[int, float] = {}
    with slack._lock:  # the sandbox appends from its server threads  # noqa: SLF001
        calls = list(slack.calls)
    for call in calls:
        if call.method != "chat.postMessage" or not call.ok:
            continue
        match = PAGED.search(str(call.params.get("text", "")))
        for ref in re.findall(r"INC-(\d+)", match.group(1)) if match else []:
            first.setdefault(int(ref), call.at)
    return first


def declare_round(
    pool: ThreadPoolExecutor, platform: SlackPlatform, texts: list[str]
) -> list[tuple[float, int | None, str]]:
    """Send every declare at once: (wall-clock send time, incident number or None, problem)."""
    barrier = threading.Barrier(len(texts))

    def one(text: str) -> tuple[float, int | None, str]:
        barrier.wait(timeout=30)
        sent = time.time()
        try:
            result = platform.command(text)
        except Exception as exc:  # noqa: BLE001 - reported as a failure, never lost
            return sent, None, f"{type(exc).__name__}: {exc}"
        match = re.match(r"INC-(\d+) declared", result.text)
        if result.status != 200 or not match:
            return sent, None, f"HTTP {result.status}: {result.text[:120]}"
        return sent, int(match.group(1)), ""

    return list(pool.map(one, texts))


def wait_for_pages(slack: SlackSandbox, numbers: list[int]) -> dict[int, float]:
    deadline = time.monotonic() + PAGE_TIMEOUT_S
    while True:
        seen = page_times(slack)
        if all(n in seen for n in numbers) or time.monotonic() > deadline:
            return seen
        time.sleep(0.02)


def run(platform: SlackPlatform, slack: SlackSandbox, n: int, rounds: int, severity: str, counter: list[int]):
    """Rounds of `n` concurrent declares: (times to page in seconds, problems)."""
    samples: list[float] = []
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="declare") as pool:
        for _ in range(rounds):
            texts = []
            for _ in range(n):
                counter[0] += 1
                texts.append(f"declare {severity} Page bench {counter[0]}")
            results = declare_round(pool, platform, texts)
            numbers = [number for _, number, _ in results if number is not None]
            problems += [problem for _, number, problem in results if number is None]
            seen = wait_for_pages(slack, numbers)
            for sent, number, _ in results:
                if number is None:
                    continue
                if number in seen:
                    samples.append(seen[number] - sent)
                else:
                    problems.append(f"INC-{number}: no page within {PAGE_TIMEOUT_S:.0f} s")
    return sorted(samples), problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--severity", default="p1", help="severity of the declares (p1: war room first)")
    parser.add_argument("--alone", type=int, default=10, help="declares one at a time")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128], help="declares per round")
    parser.add_argument("--rounds", type=int, default=2, help="measured rounds per concurrency")
    args = parser.parse_args()

    t0 = time.perf_counter()
    exit_code = 0
    with tempfile.TemporaryDirectory(prefix="bench-page-") as workdir:
        # A Slack that answers everything at once: the bot's own speed. With Slack's limits on
        # (128 pages to one person are bounded by one post a second), see bench/storm.py.
        slack = SlackSandbox(scopes=runner.manifest_scopes(), rate_limits=False).start()
        bot = Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, workdir)
        try:
            platform = SlackPlatform(bot.url, runner.SIGNING_SECRET, slack)
            counter = [0]
            run(platform, slack, 1, 1, args.severity, counter)  # warm-up: imports, first connections
            rows: list[tuple[str, int, list[float]]] = []
            problems: list[str] = []
            for label, n, rounds in [("alone", 1, args.alone)] + [
                (f"{c} concurrent", c, args.rounds) for c in args.concurrency
            ]:
                started = time.perf_counter()
                samples, found = run(platform, slack, n, rounds, args.severity, counter)
                problems += found
                rows.append((label, n, samples))
                print(f"  {label}: {len(samples)} pages in {time.perf_counter() - started:.1f} s", flush=True)
        finally:
            bot.stop()
            slack.stop()

    print()
    print(f"time to page ({args.severity.upper()} declares; ms from the declare's request to the page's post)")
    header = f"{'declares':<15} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8}"
    print(header)
    print("-" * len(header))
    verdict = None
    for label, n, samples in rows:
        if not samples:
            print(f"{label:<15} {0:>4}   (no pages)")
            continue
        p50, p99 = statistics.median(samples) * 1000, percentile(samples, 99) * 1000
        print(f"{label:<15} {len(samples):>4} {p50:>6.0f}ms {p99:>6.0f}ms {samples[-1] * 1000:>6.0f}ms")
        if n == TARGET_CONCURRENCY:
            verdict = p99 / 1000
    if verdict is not None:
        state = "MET" if verdict <= TARGET_P99_S else "MISSED"
        print(
            f"target: p99 <= {TARGET_P99_S:.0f} s under {TARGET_CONCURRENCY} concurrent declares: {state} ({verdict:.2f} s)"
        )
    print(f"failures: {len(problems)}")
    for problem in problems[:20]:
        print(f"  FAILED {problem}")
    if problems:
        exit_code = 1
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total {time.perf_counter() - t0:.1f} s")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
