"""Benchmark: does the bot ack slash commands as fast as a Bolt app that does nothing but ack?

Starts the Slack sandbox in this process, the real bot as `incident-bot serve` (waitress, 32
threads, default config, its own SQLite file) in a process of its own, and next to it a bare
Bolt app whose `/incident` listener only calls `ack()` (bench/bare_bolt.py), served the same
way (waitress, 32 threads, loopback, its own process). Each server has its own interpreter, as
in production, so the clients' threads here do not compete with either server for the GIL.
Then fires rounds of 32, then 128, concurrent signed slash commands at each, released together
by a barrier, and times only the HTTP round trip of each request (`PlatformResult.elapsed`).
Bot and baseline rounds alternate (ABBA order), after one unmeasured warm-up round each, so
machine noise hits both alike. Between rounds the bot's after-ack work (a declare's
announcement, paging DM...) is left to finish, so one round's background work does not land
on the next round, whichever target that is; within a round it does overlap with the acks
still in flight, which is the point.

Workloads: `/incident help`, `/incident list` (with a few open incidents seeded first), and
`/incident declare p3 Bench incident N` (a SQLite write before the ack, Slack calls after it).
The baseline gets the same texts. Targets: p99 bot/baseline <= 1.2 for help and list, <= 2 for
declare, at each concurrency. The exit code is 0 whatever the ratio (it is a measurement) and 1
if any request failed (an exception, a status other than 200, or a declare the bot did not ack
as declared). Warnings logged during the run are counted and summarised at the end.

    python bench/ack_latency.py [--concurrency 32 128] [--samples 480] [--rounds N]
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import urllib.request  # noqa: E402

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import PlatformResult, SlackPlatform  # noqa: E402

WORKLOADS = ("help", "list", "declare")
# p99 bot / baseline: a declare writes the incident before its ack (an acked incident survives a
# SIGKILL), so it may cost more than a read.
TARGET_P99_RATIO = {"help": 1.2, "list": 1.2, "declare": 2.0}
SERVER_THREADS = 32
SEED_INCIDENTS = 5  # open incidents before `list` runs, so it renders real rows
SETTLE_TIMEOUT = 20.0
PYCACHE = os.path.join(tempfile.gettempdir(), "incident-bot-bench-pycache")


class LogTally(logging.Handler):
    """Counts the warnings the bot and its libraries log during the run, to print a summary."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[tuple[str, str], int] = {}
        self._tally_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"\d[\d:. -]*", "#", record.getMessage().splitlines()[0])[:100]
        with self._tally_lock:
            key = (f"{record.levelname} {record.name}", message)
            self.counts[key] = self.counts.get(key, 0) + 1


@dataclass
class Cell:
    """The timings of one workload against one target."""

    samples: list[float] = field(default_factory=list)  # seconds
    failures: list[str] = field(default_factory=list)


class Server:
    """A server in a process of its own: the bot (`incident-bot serve`) or the bare baseline."""

    def __init__(self, name: str, argv: list[str], slack: SlackSandbox, workdir: str, wait_ready: bool = True) -> None:
        self.name = name
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.db_path = os.path.join(workdir, f"{name}.db")
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": runner.BOT_TOKEN,
            "SLACK_SIGNING_SECRET": runner.SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "INCIDENT_BOT_DB": self.db_path,
            "PORT": str(self.port),
            "HTTP_THREADS": str(SERVER_THREADS),
            "LOG_LEVEL": "WARNING",
            "INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE": "1",  # the built-in config: the sandbox's people
        }
        # Byte-code caches, as a deployed image has them (pip compiles the libraries; our modules
        # would otherwise be compiled again at every start when PYTHONDONTWRITEBYTECODE is set).
        env["PYTHONPYCACHEPREFIX"] = PYCACHE
        for unset in ("SLACK_APP_TOKEN", "INCIDENT_BOT_CONFIG", "PYTHONDONTWRITEBYTECODE"):
            env.pop(unset, None)
        self.log = open(os.path.join(workdir, f"{name}.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log, cwd=workdir)
        if wait_ready:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Until /healthz says ok (the bot: Slack answered and every timer is rebuilt)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                    if json.loads(response.read()).get("status") == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} did not start; see {self.log.name}")
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def fire_round(
    pool: ThreadPoolExecutor, platform: SlackPlatform, texts: list[str]
) -> list[PlatformResult | BaseException]:
    """Send every text at once (a barrier releases them together); results in text order."""
    barrier = threading.Barrier(len(texts))

    def one(text: str) -> PlatformResult | BaseException:
        try:
            barrier.wait(timeout=30)
            return platform.command(text)
        except BaseException as exc:  # noqa: BLE001 - reported as a failure, never lost
            return exc

    return list(pool.map(one, texts))


def settle(bot: Server, results: list[PlatformResult]) -> tuple[float, list[str]]:
    """Wait until the after-ack work of these declares is done: (seconds it took, problems).

    Done means: the set-up reply ("INC-n is announced in ...") reached the response_url, and
    every delivery the incident's timers fired (the page, the "who was paged" line) is sent.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + SETTLE_TIMEOUT
    numbers, problems = [], []
    for result in results:
        match = re.match(r"INC-(\d+) declared", result.text)
        if not match:
            continue
        numbers.append(int(match.group(1)))
        try:
            result.wait_response(timeout=max(0.1, deadline - time.monotonic()))
        except AssertionError:
            problems.append(f"INC-{match.group(1)}: no set-up reply on its response_url")
    # The bot's own SQLite file, read-only beside it (WAL): what fired, and what is still unsent.
    db = sqlite3.connect(f"file:{bot.db_path}?mode=ro", uri=True, timeout=30)
    try:
        while numbers and time.monotonic() < deadline:
            numbers = [
                number
                for number in numbers
                # fetchall, not fetchone: an unfinished statement would pin an old snapshot of the file
                if not db.execute("SELECT 1 FROM firings WHERE incident = ?", [number]).fetchall()
                or db.execute(
                    "SELECT 1 FROM deliveries WHERE incident = ? AND status IN ('pending', 'sending')", [number]
                ).fetchall()
            ]
            if numbers:
                time.sleep(0.02)
    finally:
        db.close()
    problems += [f"INC-{number}: pages not sent after {SETTLE_TIMEOUT:.0f} s" for number in numbers]
    return time.perf_counter() - started, problems


def check(target: str, workload: str, results: list[PlatformResult | BaseException], cell: Cell) -> None:
    for result in results:
        if isinstance(result, BaseException):
            cell.failures.append(f"{type(result).__name__}: {result}")
            continue
        if result.status != 200:
            cell.failures.append(f"HTTP {result.status}: {str(result.body)[:200]}")
            continue
        if target == "bot" and workload == "declare" and "declared" not in result.text:
            cell.failures.append(f"unexpected ack: {result.text[:200]}")
            continue
        cell.samples.append(result.elapsed)


def measure_level(
    n: int, rounds: int, platforms: dict[str, SlackPlatform], bot: Server, numbering: list[int]
) -> tuple[dict[tuple[str, str], Cell], list[float], list[str], int]:
    """Rounds of `n` concurrent commands per workload and target: cells, after-ack times, problems, sent."""

    def texts_for(workload: str) -> list[str]:
        if workload != "declare":
            return [workload] * n
        texts = [f"declare p3 Bench incident {numbering[0] + i + 1}" for i in range(n)]
        numbering[0] += n
        return texts

    cells = {(w, t): Cell() for w in WORKLOADS for t in platforms}
    background: list[float] = []  # seconds from a declare round's end until its set-up is done
    after_ack_problems: list[str] = []  # after-ack work that did not finish (not an ack failure)
    sent = 0
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="bench") as pool:
        for workload in WORKLOADS:
            started = time.perf_counter()
            for round_no in range(rounds + 1):  # round 0 is the warm-up
                order = ["bot", "baseline"] if round_no % 2 == 0 else ["baseline", "bot"]
                for target in order:
                    results = fire_round(pool, platforms[target], texts_for(workload))
                    ok = [r for r in results if isinstance(r, PlatformResult)]
                    sent += len(results)
                    if target == "bot" and workload == "declare":
                        waited, problems = settle(bot, ok)
                        after_ack_problems += problems
                        if round_no > 0:
                            background.append(waited)
                    if round_no > 0:
                        check(target, workload, results, cells[(workload, target)])
                    else:  # the warm-up counts for failures, not for timings
                        warm = Cell()
                        check(target, workload, results, warm)
                        cells[(workload, target)].failures.extend(warm.failures)
            print(f"  {n} concurrent, {workload}: {time.perf_counter() - started:.1f} s", flush=True)
    return cells, background, after_ack_problems, sent


def report_level(n: int, cells: dict[tuple[str, str], Cell], background: list[float]) -> list[str]:
    """Print one concurrency level's table; the workloads that missed their target."""
    print()
    header = f"{'workload':<8} {'target':<9} {'n':>4} {'median':>8} {'p99':>8} {'max':>8} {'median x':>9} {'p99 x':>7}"
    print(f"{n} concurrent requests")
    print(header)
    print("-" * len(header))
    missed, met = [], []
    for workload in WORKLOADS:
        stats = {}
        for target in ("bot", "baseline"):
            samples = sorted(cells[(workload, target)].samples)
            stats[target] = (
                (len(samples), statistics.median(samples) * 1000, percentile(samples, 99) * 1000, samples[-1] * 1000)
                if samples
                else (0, math.nan, math.nan, math.nan)
            )
        median_ratio = stats["bot"][1] / stats["baseline"][1]
        p99_ratio = stats["bot"][2] / stats["baseline"][2]
        for target in ("bot", "baseline"):
            count, med, p99, worst = stats[target]
            ratios = f" {median_ratio:>8.2f}x {p99_ratio:>6.2f}x" if target == "bot" else ""
            print(f"{workload:<8} {target:<9} {count:>4} {med:>6.1f}ms {p99:>6.1f}ms {worst:>6.1f}ms{ratios}")
        target_ratio = TARGET_P99_RATIO[workload]
        (met if p99_ratio <= target_ratio else missed).append(f"{workload} {p99_ratio:.2f}x (<= {target_ratio})")
    if background:
        print(
            f"declare after-ack work finished {statistics.median(background) * 1000:.0f} ms"
            f" (median; max {max(background) * 1000:.0f} ms) after the round's last ack"
        )
    print(
        f"target p99 bot/baseline at {n}: "
        + ("MET for all" if not missed else f"MISSED for {', '.join(missed)}")
        + (f"; met for {', '.join(met)}" if met else "")
    )
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128], help="requests per round")
    parser.add_argument(
        "--samples", type=int, default=480, help="measured requests per cell (rounds = samples / concurrency)"
    )
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per cell (overrides --samples)")
    args = parser.parse_args()
    tally = LogTally()
    logging.getLogger().addHandler(tally)  # instead of printing each one to stderr

    t0 = time.perf_counter()
    workdir = tempfile.TemporaryDirectory(prefix="bench-ack-")
    slack = SlackSandbox(scopes=runner.manifest_scopes()).start()
    here = Path(__file__).resolve().parent
    bot = Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, workdir.name)
    baseline = Server("baseline", [sys.executable, str(here / "bare_bolt.py")], slack, workdir.name)
    platforms = {
        "bot": SlackPlatform(bot.url, runner.SIGNING_SECRET, slack),
        "baseline": SlackPlatform(baseline.url, runner.SIGNING_SECRET, slack),
    }
    numbering = [0]
    sent = 0
    after_ack_problems: list[str] = []
    failures: list[tuple[int, str, str, str]] = []
    missed: list[str] = []
    try:
        for i in range(SEED_INCIDENTS):
            seed = platforms["bot"].command(f"declare p3 Seed incident {i + 1}")
            assert seed.status == 200, seed
            after_ack_problems += settle(bot, [seed])[1]
        print(
            f"set-up: sandbox, bot, baseline and {SEED_INCIDENTS} seed incidents in "
            f"{time.perf_counter() - t0:.1f} s; concurrency {', '.join(map(str, args.concurrency))}",
            flush=True,
        )
        results = []
        for n in args.concurrency:
            rounds = args.rounds or max(1, math.ceil(args.samples / n))
            cells, background, problems, count = measure_level(n, rounds, platforms, bot, numbering)
            results.append((n, cells, background))
            after_ack_problems += problems
            sent += count
            failures += [(n, w, t, f) for (w, t), cell in cells.items() for f in cell.failures]
        for n, cells, background in results:
            missed += [f"{m} at {n}" for m in report_level(n, cells, background)]
        print("(ms: HTTP round trip of the request; p99 is nearest-rank; x = bot / baseline)")
        for problem in after_ack_problems[:10]:
            print(f"  after-ack work unfinished: {problem}")
        if len(after_ack_problems) > 10:
            print(f"  ... and {len(after_ack_problems) - 10} more")
        if after_ack_problems:
            with open(bot.log.name, encoding="utf-8", errors="replace") as log:
                print("bot log (last lines):\n" + "".join(log.readlines()[-15:]))
        print(f"requests: {sent} sent (warm-up included), {len(failures)} failed")
        for n, workload, target, failure in failures[:20]:
            print(f"  FAILED {workload}/{target} at {n}: {failure}")
        if len(failures) > 20:
            print(f"  ... and {len(failures) - 20} more")
    finally:
        baseline.stop()
        bot.stop()
        slack.stop()
        workdir.cleanup()
    for (source, message), count in sorted(tally.counts.items(), key=lambda kv: -kv[1]):
        print(f"log: {count} x {source}: {message}")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; total {time.perf_counter() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
