"""Benchmark: years of history. Start-up, memory and `list` with 1,000 open incidents beside
100,000 resolved ones, against the same bot on an empty database in the same run.

Seeds a SQLite file through the store's own schema (the bot's migrations create it), with
rows shaped like real ones: each resolved incident has its timeline (declare, ack, updates,
resolve), audit records, fired timers and sent pages; the open ones are recent, acknowledged
and set up, so start-up rebuilds a timer for each. Then starts `incident-bot serve` on it as
a process of its own (Slack is the sandbox in this process) and measures:

- start-up: process start to `/healthz` ready (every timer rebuilt from the store);
- memory: the process's resident set once ready (VmRSS) and its peak (VmHWM);
- `/incident list` (and `/incident stats 90d` when the bot has it): signed requests over HTTP,
  sequential, p50 / p99 of the round trip.

Targets: start-up < 2 s within 200 MB RSS; `stats 90d` answered < 1 s.

    python bench/history.py [--resolved 100000] [--open 1000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ack_latency import Server, percentile  # noqa: E402

import commands  # noqa: E402
from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402
from bot.store import Store  # noqa: E402

TARGET_STARTUP_S = 2.0
TARGET_RSS_MB = 200.0
TARGET_STATS_S = 1.0


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def seed(path: str, resolved: int, open_: int, now: datetime) -> None:
    Store(path).close()  # the bot's own migrations make the schema
    rng = random.Random(7)
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(incidents)")}
    incidents, timeline, audit, firings, deliveries = [], [], [], [], []
    total = resolved + open_
    for number in range(1, total + 1):
        is_open = number > resolved
        severity = rng.choice(["P1", "P2", "P2", "P3", "P3", "P4"])
        if is_open:
            declared = now - timedelta(minutes=rng.uniform(1, 20))
        else:
            declared = now - timedelta(days=3 * 365 * (resolved - number) / resolved, minutes=rng.uniform(30, 600))
        acked = declared + timedelta(seconds=rng.uniform(20, 1500))
        closed = acked + timedelta(minutes=rng.uniform(5, 600))
        row = {
            "number": number,
            "title": f"Seeded incident {number}: checkout latency",
            "severity": severity,
            "status": "acknowledged" if is_open else "resolved",
            "commander": "U0PRIMARY",
            "declared_by": "U0PRIMARY",
            "declared_at": iso(declared),
            "last_update_at": iso(now - timedelta(seconds=30) if is_open else closed),
            "acknowledged_at": iso(acked if not is_open else min(acked, now - timedelta(seconds=60))),
            "acknowledged_by": "U0PRIMARY",
            "resolved_at": None if is_open else iso(closed),
            "resolved_by": None if is_open else "U0PRIMARY",
            "announcement_channel": "C0INCIDENT",
            "announcement_ts": f"{declared.timestamp():.6f}",
            "war_room_id": f"C0WAR{number:06d}" if severity in ("P1", "P2") else None,
            "war_room_name": f"inc-{number}-checkout-latency" if severity in ("P1", "P2") else None,
            "war_room_briefed": 1,
            "version": 5,
        }
        incidents.append({k: v for k, v in row.items() if k in columns})
        events = [("declare", declared), ("ack", acked), ("update", acked + timedelta(minutes=5))]
        if not is_open:
            events.append(("resolve", closed))
        for kind, at in events:
            timeline.append((number, iso(at), kind, "U0PRIMARY", f"{kind} of INC-{number}"))
            audit.append((number, iso(at), "U0PRIMARY", kind, json.dumps({"status": {"to": kind}})))
        firings.append((number, "step:0", iso(declared)))
        deliveries.append(
            (number, "step:0", "page", "oncall_primary", "", "sent", 1, iso(declared), iso(declared), iso(declared))
        )
    names = list(incidents[0])
    with conn:
        conn.executemany(
            f"INSERT INTO incidents ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
            [[r[n] for n in names] for r in incidents],
        )
        conn.executemany("INSERT INTO timeline (incident, at, kind, actor, text) VALUES (?, ?, ?, ?, ?)", timeline)
        conn.executemany("INSERT INTO audit (incident, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)", audit)
        conn.executemany("INSERT INTO firings (incident, key, fired_at) VALUES (?, ?, ?)", firings)
        conn.executemany(
            "INSERT INTO deliveries (incident, firing_key, kind, target, detail, status, attempts,"
            " next_attempt_at, created_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            deliveries,
        )
    conn.execute("ANALYZE")
    conn.close()


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def timed_commands(platform: SlackPlatform, text: str, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        result = platform.command(text)
        if result.status != 200:
            raise RuntimeError(f"/incident {text} answered {result.status}")
        samples.append(result.elapsed)
    return sorted(samples)


def measure(label: str, db_dir: str, slack: SlackSandbox, requests: int) -> dict[str, float]:
    started = time.monotonic()
    server = Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, db_dir)
    startup = time.monotonic() - started
    try:
        rss, peak = memory_mb(server.process.pid)
        platform = SlackPlatform(server.url, runner.SIGNING_SECRET, slack)
        figures = {"startup_s": startup, "rss_mb": rss, "peak_mb": peak}
        for verb, text in (("list", "list"), ("stats", "stats 90d")):
            if verb in commands.REGISTRY:
                samples = timed_commands(platform, text, requests)
                figures[f"{verb}_p50_ms"] = statistics.median(samples) * 1000
                figures[f"{verb}_p99_ms"] = percentile(samples, 99) * 1000
    finally:
        server.stop()
    print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()), flush=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolved", type=int, default=100_000)
    parser.add_argument("--open", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-history-") as empty_dir,
        tempfile.TemporaryDirectory(prefix="bench-history-") as full_dir,
        SlackSandbox() as slack,
    ):
        t0 = time.monotonic()
        seed(str(Path(full_dir) / "bot.db"), args.resolved, args.open, datetime.now(UTC))
        size_mb = (Path(full_dir) / "bot.db").stat().st_size / 1e6
        print(
            f"seeded {args.open:,} open + {args.resolved:,} resolved incidents ({size_mb:.0f} MB) in "
            f"{time.monotonic() - t0:.1f} s",
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="bench-history-") as warm_dir:  # fills the byte-code cache
            Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, warm_dir).stop()
        empty = measure("empty database (baseline)", empty_dir, slack, args.requests)
        full = measure(f"{args.open:,} open + {args.resolved:,} resolved", full_dir, slack, args.requests)

    print()
    print("| figure | empty db | with history | target |")
    print("|---|---|---|---|")
    targets = {
        "startup_s": f"< {TARGET_STARTUP_S} s",
        "rss_mb": f"< {TARGET_RSS_MB:.0f} MB",
        "stats_p99_ms": f"< {TARGET_STATS_S * 1000:.0f} ms",
    }
    for key in full:
        print(f"| {key} | {empty.get(key, float('nan')):.1f} | {full[key]:.1f} | {targets.get(key, '')} |")
    missed = []
    if full["startup_s"] >= TARGET_STARTUP_S:
        missed.append(f"start-up {full['startup_s']:.2f} s")
    if full["rss_mb"] >= TARGET_RSS_MB:
        missed.append(f"RSS {full['rss_mb']:.0f} MB")
    if full.get("stats_p99_ms", 0) >= TARGET_STATS_S * 1000:
        missed.append(f"stats p99 {full['stats_p99_ms']:.0f} ms")
    print("\ntargets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
