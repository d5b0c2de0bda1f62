"""Benchmark: a storm of P1 declares against a Slack that enforces its rate limits.

32 P1s are declared at once (released together by a barrier) by 32 people; each pages the
primary on-call, one person, so the pages share one DM channel, where Slack posts one message a
second after a short burst: the pages that pile up go as page digests (one message, a section and
an Acknowledge button per incident), so a page's count is per incident whichever message carried
it. The real bot runs as `incident-bot serve` in a process of its own; the
Slack sandbox runs here, once with Slack's limits enforced (its default: per-method tiers, and
chat.postMessage per channel) and once, the baseline, answering everything at once.

Measured: time to page (declare request to the page's post) p50/p99; when the last
announcement was posted and the last war room created (from the first declare), against the
floor Slack's tiers allow (32 announcements in one channel at 1/s after a burst of 6; 32
conversations.create at Tier 2, 20 a minute after a burst of 5); how many calls Slack answered
429. Targets (issue 18): page p99 <= 1 s; every announcement and war room within 10% of the
floor; fewer than 5 rate-limited answers. The exit code is 1 only if a declare was not acked or
its page never came.

    python bench/storm.py [--declares 32]
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
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ack_latency import Server, percentile  # noqa: E402

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.limits import POST_PER_CHANNEL, TIER_2  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402

# A page alone ("You are paged: INC-3 (P1 ...") or a page digest ("You are paged: INC-4, INC-5 (2 incidents)").
PAGED = re.compile(r"You are paged: (INC-\d+(?:, INC-\d+)*)")
ANNOUNCED = re.compile(r"^INC-(\d+) \(P1")
WAIT_S = 240.0

CONFIG = """
channel: incident-response
war_room: {severities: [P1, P2], prefix: inc}
people:
  oncall_primary: [U0PRIMARY]
  support: [U0SUPPORT]
severities:
  P1: {ack_within: 1h, update_every: 1h, escalation: [{after: 0s, page: [oncall_primary]}]}
  P2: {ack_within: 1h, escalation: [{after: 0s, page: [oncall_primary]}]}
  P3: {ack_within: 1h, escalation: [{after: 0s, page: [support]}]}
  P4: {ack_within: 1d, escalation: [{after: 0s, page: [support]}]}
service: {project: p, region: us-central1, name: tai-autonomics, health_url: "http://127.0.0.1:9/health"}
"""


def floor_s(n: int) -> tuple[float, float]:
    """(announcements, war rooms): the least time Slack's limits allow for `n` of each."""
    announce = max(0, n - POST_PER_CHANNEL.burst) / (POST_PER_CHANNEL.per_minute / 60)
    rooms = max(0, n - TIER_2.burst) / (TIER_2.per_minute / 60)
    return announce, rooms


def storm(limits: bool, n: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as workdir:
        Path(workdir, "incident-bot.yaml").write_text(CONFIG, encoding="utf-8")
        slack = SlackSandbox(scopes=runner.manifest_scopes(), rate_limits=limits).start()
        people = [f"U0ONCALL{i:02d}" for i in range(n)]
        for user in people:
            slack.add_user(user, user.lower())
        bot = Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, workdir)
        try:
            platform = SlackPlatform(bot.url, runner.SIGNING_SECRET, slack)
            barrier = threading.Barrier(n)

            def declare(i: int) -> tuple[float, int | None]:
                barrier.wait(timeout=30)
                sent = time.time()
                result = platform.command(f"declare p1 Storm {i}", user=people[i])
                match = re.match(r"INC-(\d+) declared", result.text)
                return sent, int(match.group(1)) if result.status == 200 and match else None

            with ThreadPoolExecutor(max_workers=n) as pool:
                results = list(pool.map(declare, range(n)))
            first = min(sent for sent, _ in results)
            numbers = [number for _, number in results if number is not None]
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                pages, announced, rooms = _seen(slack)
                if all(x in pages and x in announced for x in numbers) and len(rooms) >= len(numbers):
                    break
                time.sleep(0.1)
            pages, announced, rooms = _seen(slack)
            to_page = sorted(pages[x] - sent for sent, x in results if x is not None and x in pages)
            return {
                "acked": len(numbers),
                "paged": len(to_page),
                "page_p50": statistics.median(to_page) if to_page else None,
                "page_p99": percentile(to_page, 99) if to_page else None,
                "announced": len(announced),
                "last_announcement": max(announced.values()) - first if announced else None,
                "rooms": len(rooms),
                "last_room": max(rooms) - first if rooms else None,
                "page_messages": _page_messages(slack),
                "rate_limited": len(slack.rate_limited()),
                "limited_by": dict(Counter(c.method for c in slack.rate_limited())),
                "problems": n - len(numbers) + len([x for x in numbers if x not in pages]),
            }
        finally:
            bot.stop()
            slack.stop()


def _seen(slack: SlackSandbox) -> tuple[dict[int, float], dict[int, float], list[float]]:
    with slack._lock:  # noqa: SLF001 - the sandbox appends from its server threads
        calls = list(slack.calls)
    pages: dict[int, float] = {}
    announced: dict[int, float] = {}
    rooms: list[float] = []
    for call in calls:
        if not call.ok:
            continue
        text = str(call.params.get("text", ""))
        if call.method == "chat.postMessage":
            if m := PAGED.search(text):
                for ref in re.findall(r"INC-(\d+)", m.group(1)):
                    pages.setdefault(int(ref), call.at)
            elif (m := ANNOUNCED.match(text)) and not call.params.get("thread_ts"):
                announced.setdefault(int(m.group(1)), call.at)
        elif call.method == "conversations.create":
            rooms.append(call.at)
    return pages, announced, rooms


def _page_messages(slack: SlackSandbox) -> int:
    """How many messages carried the pages (a digest carries several)."""
    with slack._lock:  # noqa: SLF001 - the sandbox appends from its server threads
        calls = list(slack.calls)
    return sum(
        1 for c in calls if c.ok and c.method == "chat.postMessage" and PAGED.search(str(c.params.get("text", "")))
    )


def _s(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--declares", type=int, default=32)
    args = parser.parse_args()
    n = args.declares
    t0 = time.perf_counter()
    runs = {"Slack's limits on": storm(True, n), "baseline: no limits": storm(False, n)}
    announce_floor, room_floor = floor_s(n)
    print()
    print(f"storm: {n} concurrent P1 declares by {n} people, all paging the one primary on-call")
    header = f"{'':<22} {'page p50':>9} {'page p99':>9} {'last announced':>15} {'last war room':>14} {'429s':>5}"
    print(header)
    print("-" * len(header))
    for label, r in runs.items():
        print(
            f"{label:<22} {_s(r['page_p50']):>9} {_s(r['page_p99']):>9} {_s(r['last_announcement']):>15}"
            f" {_s(r['last_room']):>14} {r['rate_limited']!s:>5}"
        )
    for label, r in runs.items():
        if r["limited_by"]:
            print(f"  429s met ({label}): {r['limited_by']}")
    limited = runs["Slack's limits on"]
    print(
        f"floor Slack's tiers allow: announcements (one channel) {announce_floor:.0f} s,"
        f" war rooms {room_floor:.0f} s; messages that carried the pages: {limited['page_messages']}"
    )
    checks = [
        ("page p99 <= 1 s", isinstance(limited["page_p99"], float) and limited["page_p99"] <= 1.0),
        (
            "announcements within 10% of the floor",
            isinstance(limited["last_announcement"], float) and limited["last_announcement"] <= announce_floor * 1.1,
        ),
        (
            "war rooms within 10% of the floor",
            isinstance(limited["last_room"], float) and limited["last_room"] <= room_floor * 1.1,
        ),
        ("fewer than 5 rate-limited answers", int(str(limited["rate_limited"])) < 5),
    ]
    for what, met in checks:
        print(f"target: {what}: {'MET' if met else 'MISSED'}")
    problems = sum(int(str(r["problems"])) for r in runs.values())
    print(
        f"failures: {problems}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
        f" total {time.perf_counter() - t0:.1f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
