"""Benchmark: time to page on SQLite and PostgreSQL, and leader failover after SIGKILL.

Starts the Slack sandbox in this process and the bot as real `incident-bot serve` processes
with the built-in config (a P1 pages the primary at declare):

- SQLite: one process on its own file.
- PostgreSQL: a throwaway server (initdb + pg_ctl, as the tests start it) and two processes on
  one database: the leader and a standby. Declares alternate between them, so half reach the
  leader through the standby's NOTIFY, as behind Cloud Run's load balancer.

Time to page is from just before the signed `/incident declare p1 …` request is sent to the
moment the primary's page reaches the sandbox (the DM's `ts`), for one declare at a time
(`--single` rounds) and for 32 declares released together (`--bursts` rounds). Failover is from
SIGKILL of the leader to the standby's health endpoint saying it leads, `--failovers` times, with
the default 10 s lease; each run restarts the killed process as the new standby.

    python bench/multi_instance.py [--single 10] [--bursts 3] [--concurrency 32] [--failovers 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402
from tests.pg import start_server  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Bot:
    def __init__(self, name: str, slack: SlackSandbox, db: str, workdir: str, lease_s: float) -> None:
        self.name = name
        self.slack = slack
        self.port = free_port()
        self.env = {
            **os.environ,
            "SLACK_BOT_TOKEN": runner.BOT_TOKEN,
            "SLACK_SIGNING_SECRET": runner.SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "INCIDENT_BOT_DB": db,
            "INCIDENT_BOT_LEASE_S": str(lease_s),
            "INCIDENT_BOT_INSTANCE": name,
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE": "1",  # the built-in config: the sandbox's people
        }
        for unset in ("SLACK_APP_TOKEN", "INCIDENT_BOT_CONFIG"):
            self.env.pop(unset, None)
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(os.path.join(self.workdir, f"{self.name}.log"), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve"], env=self.env, stdout=log, stderr=log, cwd=self.workdir
            )
        self.wait(lambda h: h.get("status") == "ok", 30)

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
            return dict(json.loads(r.read()))

    def wait(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate(self.health()):
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise SystemExit(f"{self.name} did not become ready/leader in {timeout} s")

    @property
    def leader(self) -> bool:
        try:
            return bool(self.health().get("leader"))
        except OSError:
            return False

    @property
    def platform(self) -> SlackPlatform:
        return SlackPlatform(f"http://127.0.0.1:{self.port}/slack/events", runner.SIGNING_SECRET, self.slack)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


class Pager:
    """Numbers declares, and watches the primary's DMs for each one's page.

    One watcher thread reads only the DMs that are new since its last look: 32 threads each
    scanning every DM would compete for the GIL with the Slack sandbox serving the bots.
    """

    def __init__(self, slack: SlackSandbox) -> None:
        self.slack = slack
        self.count = 0
        self.lock = threading.Lock()
        self.paged_at: dict[str, float] = {}
        self.arrived = threading.Condition(self.lock)
        self.stopping = threading.Event()
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        seen = 0
        while not self.stopping.wait(0.005):
            dms = self.slack.dms_to("U0PRIMARY")
            for m in dms[seen:]:
                # A page alone, or a page digest: "You are paged: INC-4, INC-5 (2 incidents)".
                found = re.search(r"You are paged: (INC-\d+(?:, INC-\d+)*)", m.text or "")
                if found:
                    with self.lock:
                        for ref in re.findall(r"INC-\d+", found.group(1)):
                            self.paged_at.setdefault(ref, float(m.ts))
                        self.arrived.notify_all()
            seen = len(dms)

    def close(self) -> None:
        self.stopping.set()
        self.watcher.join(timeout=5)

    def title(self) -> str:
        with self.lock:
            self.count += 1
            return f"Bench {self.count:04d}"

    def declare(self, bot: Bot) -> float:
        """Declare through `bot`; seconds until the primary's page reached Slack."""
        title = self.title()
        sent = time.time()
        reply = bot.platform.command(f"declare p1 {title}", user="U0ALICE")
        ref = reply.text.split(" ", 1)[0]
        if not ref.startswith("INC-"):
            raise SystemExit(f"declare failed: {reply.text!r}")
        with self.lock:
            if not self.arrived.wait_for(lambda: ref in self.paged_at, timeout=60):
                raise SystemExit(f"{ref} was not paged within 60 s")
            return self.paged_at[ref] - sent


def time_to_page(bots: list[Bot], pager: Pager, single: int, bursts: int, concurrency: int) -> dict[str, list[float]]:
    alone = [pager.declare(bots[i % len(bots)]) for i in range(single)]
    together: list[float] = []
    for _ in range(bursts):
        barrier = threading.Barrier(concurrency)
        results: list[float] = []

        def one(i: int, barrier: threading.Barrier, results: list[float]) -> None:
            barrier.wait()
            results.append(pager.declare(bots[i % len(bots)]))

        threads = [threading.Thread(target=one, args=(i, barrier, results)) for i in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        together.extend(results)
        time.sleep(1.0)  # let each burst's set-up finish before the next
    return {"alone": alone, "together": together}


def failovers(slack: SlackSandbox, db: str, workdir: str, runs: int) -> list[float]:
    a, b = Bot("a", slack, db, workdir, 10.0), Bot("b", slack, db, workdir, 10.0)
    a.start()
    b.start()
    times: list[float] = []
    try:
        for run in range(runs):
            leader, standby = (a, b) if a.leader else (b, a)
            time.sleep(random.uniform(2.0, 4.5))  # at a random point of the 2.5 s renewal cycle
            leader.kill()
            killed = time.monotonic()
            standby.wait(lambda h: h.get("leader") is True, 30)
            times.append(time.monotonic() - killed)
            print(f"  failover {run + 1}: {times[-1]:.2f} s", flush=True)
            leader.start()  # back as the standby
    finally:
        a.kill()
        b.kill()
    return times


def summary(values: list[float]) -> str:
    if not values:
        return "not measured"
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    return f"median {p50 * 1000:.0f} ms, worst {ordered[-1] * 1000:.0f} ms (n={len(ordered)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--failovers", type=int, default=10)
    args = parser.parse_args()

    # SIGTERM (a stopped run) leaves through `finally`, so the PostgreSQL server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    running, why = start_server()
    if running is None:
        print(f"no PostgreSQL server: {why}", file=sys.stderr)
        return 1
    workdir = tempfile.mkdtemp(prefix="bench-multi-")
    results: dict[str, dict[str, list[float]]] = {}
    try:
        if args.single or args.bursts:
            with SlackSandbox() as slack:
                sqlite_bot = Bot("sqlite", slack, os.path.join(workdir, "bench.db"), workdir, 10.0)
                sqlite_bot.start()
                try:
                    pager = Pager(slack)
                    results["SQLite, one process"] = time_to_page(
                        [sqlite_bot], pager, args.single, args.bursts, args.concurrency
                    )
                    pager.close()
                finally:
                    sqlite_bot.kill()

            with SlackSandbox() as slack:
                server = running.server
                db = server.url(server.create_database())
                leader, standby = Bot("leader", slack, db, workdir, 10.0), Bot("standby", slack, db, workdir, 10.0)
                leader.start()
                standby.start()
                try:
                    pager = Pager(slack)
                    results["PostgreSQL, two processes"] = time_to_page(
                        [leader, standby], pager, args.single, args.bursts, args.concurrency
                    )
                    pager.close()
                finally:
                    leader.kill()
                    standby.kill()

        failover_times: list[float] = []
        if args.failovers:
            with SlackSandbox() as slack:
                print("leader failover after SIGKILL (lease 10 s):", flush=True)
                server = running.server
                failover_times = failovers(slack, server.url(server.create_database()), workdir, args.failovers)
    finally:
        running.stop()

    print()
    if results:
        print(f"| Store | One declare | {args.concurrency} declares at once |")
        print("|---|---|---|")
    for name, cell in results.items():
        print(f"| {name} | {summary(cell['alone'])} | {summary(cell['together'])} |")
    if failover_times:
        print()
        print(f"Leader failover after SIGKILL, lease 10 s: {summary(failover_times)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
