"""Benchmark: an alert flood from Alertmanager, and a person's declare in the middle of it.

1,000 alerts in 10 Alertmanager groups (100 alerts each, one `alertname` per group) reach the
real bot (`incident-bot serve`, a process of its own) the way Alertmanager sends them: one POST
per group with all of its alerts (webhook version 4: `groupKey`, `alerts[]` with `fingerprint`,
`startsAt`...), each group on its own, and the same groups again every `group_interval` (here
`--interval`, 20 s; Alertmanager's default is 5 min, so this is the harsher case), twice. A 5xx
answer is retried as Alertmanager's notifier retries it: exponential back-off (0.5 s, x1.5,
+-50% jitter, at most 60 s; Retry-After is not read), until the flush's deadline, which is the
group interval but at least 10 s (notify.MinTimeout); a group still refused then is sent again at
the next interval. The Slack sandbox enforces Slack's rate limits (per-method tiers, and
chat.postMessage per channel).

While the flood's Slack work is under way (`--declare-at`, 2 s after the first POST) a person
types `/incident declare p1`, which pages the same primary on-call the alert incidents page; the
baseline is the same declare against a fresh bot with no flood, in the same run.

Run with `action: propose` (one proposal per group) and `action: declare` (one incident per
group, paging the primary): declare is the one that matters most for the person's page, since
every alert incident pages the same on-call into the same DM channel, at one post a second.

Measured, from the sandbox's transcript: incidents and proposals made; chat.postMessage calls
owed to each group (its proposal or announcement, its thread lines, its war room's posts and
its page DMs), in total and in the busiest 60 s window; the 503s the senders met and the 429s
Slack answered; the person's declare: time from the command to its announcement and to its
page, flood vs baseline. Targets (issue 18): 10 incidents or proposals; at most 3 posts per group
per minute; the person's declare announced within 2 s and paged within 1 s. The exit code is 1
only if something was lost: a group without its incident or proposal, a group made twice, or the
person's declare not announced or not paged.

    python bench/alert_flood.py [--groups 10] [--alerts 1000] [--resends 2] [--interval 20]
                                [--actions propose declare]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ack_latency import Server  # noqa: E402

from bot.sandbox import runner  # noqa: E402
from bot.sandbox.monitoring import alertmanager_alert, alertmanager_notification, send  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402
from bot.sandbox.slack.workspace import Call  # noqa: E402

ANNOUNCE = "C0INCIDENT"
PERSON = "U0ALICE"
PRIMARY = "U0PRIMARY"
WAIT_S = 180.0  # after the last send, for the flood's Slack work to finish
INC = re.compile(r"\bINC-(\d+)\b")
PAGED = re.compile(r"You are paged: INC-(\d+)\b")
ALERTNAME = "FloodAlert{:02d}"
GROUP = re.compile(r"\bFloodAlert(\d\d)\b")
PERSON_TITLE = "Checkout is down for everyone"

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
alerts:
  default: {severity: P2, action: ACTION}
"""

# Alertmanager's notifier: github.com/cenkalti/backoff's defaults, MaxElapsedTime 0 (retry until
# the flush's context ends), and the flush's deadline: the group interval, at least 10 s.
BACKOFF_INITIAL_S = 0.5
BACKOFF_MULTIPLIER = 1.5
BACKOFF_JITTER = 0.5
BACKOFF_MAX_S = 60.0
MIN_TIMEOUT_S = 10.0


@dataclass
class Sender:
    """One Alertmanager aggregation group: its flushes, and what the webhook answered."""

    url: str
    payload: dict[str, Any]
    answers: Counter[int] = field(default_factory=Counter)
    accepted_at: list[float] = field(default_factory=list)  # one per flush that got a 2xx
    gave_up: int = 0  # flushes that ran out of time (sent again at the next interval)

    def flush(self, deadline: float, stop: threading.Event) -> None:
        interval = BACKOFF_INITIAL_S
        while not stop.is_set():
            try:
                answer = send(self.url, self.payload, token=runner.ALERT_TOKEN, auth="bearer", timeout=10)
                status = answer.status
            except OSError:
                status = 0
            self.answers[status] += 1
            if 200 <= status < 300:
                self.accepted_at.append(time.time())
                return
            if status and not 500 <= status < 600:
                return  # Alertmanager drops a 4xx: a bench bug, counted by the caller
            wait = interval * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
            interval = min(interval * BACKOFF_MULTIPLIER, BACKOFF_MAX_S)
            if time.monotonic() + wait >= deadline:
                self.gave_up += 1
                return
            stop.wait(wait)


def groups_of(n_groups: int, n_alerts: int) -> list[dict[str, Any]]:
    started = datetime.now(UTC) - timedelta(minutes=2)
    payloads = []
    for g in range(n_groups):
        size = n_alerts // n_groups + (1 if g < n_alerts % n_groups else 0)
        alerts = [
            alertmanager_alert(
                alertname=ALERTNAME.format(g),
                fingerprint=f"{g:04x}{i:012x}",
                starts_at=started + timedelta(milliseconds=i),
                labels={"instance": f"host-{i:03d}:9100", "job": "node", "severity": "warning"},
                summary=f"Flood alert {g} on host-{i:03d}",
            )
            for i in range(size)
        ]
        payloads.append(alertmanager_notification(alerts, receiver="incident-bot"))
    return payloads


def run(action: str | None, n_groups: int, n_alerts: int, resends: int, interval_s: float, declare_at: float) -> dict:
    """One bot and one sandbox: the flood for `action` (None: the baseline, no flood) and the
    person's declare `declare_at` seconds after the flood's first POST."""
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as workdir:
        Path(workdir, "incident-bot.yaml").write_text(CONFIG.replace("ACTION", action or "propose"), encoding="utf-8")
        slack = SlackSandbox(scopes=runner.manifest_scopes(), rate_limits=True).start()
        os.environ["ALERT_WEBHOOK_TOKEN"] = runner.ALERT_TOKEN  # inherited by the bot's process
        bot = Server("bot", [sys.executable, "-m", "bot.cli", "serve"], slack, workdir)
        url = bot.url.replace("/slack/events", "/alerts/alertmanager")
        stop = threading.Event()
        senders = [Sender(url, p) for p in groups_of(n_groups, n_alerts)] if action else []
        try:
            platform = SlackPlatform(bot.url, runner.SIGNING_SECRET, slack)
            t0 = time.time()
            threads = [
                threading.Thread(target=_aggregation_group, args=(s, t0, resends, interval_s, stop), daemon=True)
                for s in senders
            ]
            for thread in threads:
                thread.start()
            time.sleep(max(0.0, t0 + declare_at - time.time()))
            owed_then = _made(slack, n_groups)
            sent = time.time()
            result = platform.command(f"declare p1 {PERSON_TITLE}", user=PERSON)
            acked = time.time() - sent
            match = re.match(r"INC-(\d+) declared", result.text)
            number = int(match.group(1)) if result.status == 200 and match else None
            for thread in threads:
                thread.join()
            last_send = time.time()
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                made = _made(slack, n_groups)
                person = _person(slack, number)
                if person["announced"] is not None and person["paged"] is not None and made.complete(action):
                    break
                time.sleep(0.2)
            time.sleep(1.0)  # the last edits and lines after the group's message
            calls = _calls(slack)
            made = _made(slack, n_groups)
            person = _person(slack, number)
            per_group = _posts_per_group(calls, n_groups, number)
            return {
                "action": action,
                "number": number,
                "ack_s": acked,
                "announced_s": None if person["announced"] is None else person["announced"] - sent,
                "paged_s": None if person["paged"] is None else person["paged"] - sent,
                "made": made,
                "made_before_declare": owed_then,
                "per_group": per_group,
                "posts": sum(1 for c in calls if c.method == "chat.postMessage" and c.ok),
                "updates": sum(1 for c in calls if c.method == "chat.update" and c.ok),
                "answers": sum((s.answers for s in senders), Counter()),
                "gave_up": sum(s.gave_up for s in senders),
                "accepted": sum(len(s.accepted_at) for s in senders),
                "rate_limited": Counter(c.method for c in slack.rate_limited()),
                "drained_s": time.time() - last_send,
                "last_group_page_s": _last_group_page(calls, number) - t0 if action == "declare" else None,
                "flood_s": last_send - t0,
            }
        finally:
            stop.set()
            bot.stop()
            slack.stop()


def _aggregation_group(sender: Sender, t0: float, resends: int, interval_s: float, stop: threading.Event) -> None:
    """Alertmanager's flush loop: a flush every interval from the first (a flush that retries
    keeps its slot: the next is timed from when this one started)."""
    timeout = max(interval_s, MIN_TIMEOUT_S)
    for k in range(resends + 1):
        start = t0 + k * interval_s
        if stop.wait(max(0.0, start - time.time())):
            return
        sender.flush(time.monotonic() + timeout, stop)


@dataclass
class Made:
    proposals: dict[int, int]  # group -> proposals posted
    incidents: dict[int, int]  # group -> incidents announced

    def complete(self, action: str | None) -> bool:
        if action is None:
            return True
        made = self.proposals if action == "propose" else self.incidents
        return len(made) == self.groups and all(v >= 1 for v in made.values())

    groups: int = 0


def _calls(slack: SlackSandbox) -> list[Call]:
    with slack._lock:  # noqa: SLF001 - the sandbox appends from its server threads
        return list(slack.calls)


def _made(slack: SlackSandbox, n_groups: int) -> Made:
    proposals: Counter[int] = Counter()
    incidents: Counter[int] = Counter()
    for message in slack.top_level(ANNOUNCE):
        group = GROUP.search(message.all_text)
        if group is None:
            continue
        if message.has_button("alert_declare") or message.text.startswith("🚨 Alert:"):
            proposals[int(group.group(1))] += 1
        elif INC.match(message.text):
            incidents[int(group.group(1))] += 1
    return Made(dict(proposals), dict(incidents), n_groups)


def _person(slack: SlackSandbox, number: int | None) -> dict[str, float | None]:
    announced = paged = None
    if number is None:
        return {"announced": None, "paged": None}
    for call in _calls(slack):
        if call.method != "chat.postMessage" or not call.ok:
            continue
        text = str(call.params.get("text", ""))
        if announced is None and text.startswith(f"INC-{number} (P1") and not call.params.get("thread_ts"):
            announced = call.at
        if paged is None and f"You are paged: INC-{number}" in text:
            paged = call.at
    return {"announced": announced, "paged": paged}


def _posts_per_group(calls: list[Call], n_groups: int, person: int | None) -> dict[int, dict[str, Any]]:
    """Each chat.postMessage the bot made, owed to the alert group it is about: its proposal or
    announcement (by alertname), anything in that message's thread, anything naming its
    incident or posted in its war room (the war room's posts, the page DMs). "alert" posts are
    those only alerts make (the proposal, the group's message, alert lines); the rest is what any
    declare posts (announcement, page, war-room briefing and lines). The person's incident is no
    group's."""
    by_ts: dict[str, int] = {}
    by_number: dict[int, int] = {}
    posts = [c for c in calls if c.ok and c.method == "chat.postMessage"]
    for call in posts:  # first the group's own messages: what the others hang on
        text, thread = str(call.params.get("text", "")), call.params.get("thread_ts")
        if thread or not (name := GROUP.search(text)):
            continue
        by_ts[str(call.response.get("ts"))] = int(name.group(1))
        if (number := INC.match(text)) and int(number.group(1)) != person:
            by_number[int(number.group(1))] = int(name.group(1))
    by_channel: dict[str, int] = {}
    for call in calls:
        if call.ok and call.method == "conversations.create":
            room = call.response.get("channel") or {}
            if (m := re.match(r"[a-z]+-(\d+)-", str(room.get("name", "")))) and int(m.group(1)) in by_number:
                by_channel[str(room.get("id"))] = by_number[int(m.group(1))]
    owed: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for call in posts:
        channel = str(call.response.get("channel") or call.params.get("channel") or "")
        text, thread = str(call.params.get("text", "")), call.params.get("thread_ts")
        number = INC.search(text)
        alert = text.startswith(("🚨 Alert:", "🔔", "🟢 Alert", "🟢 Every alert")) or "Alert closed" in text
        if str(call.response.get("ts")) in by_ts and not thread:
            group = by_ts[str(call.response.get("ts"))]
        elif thread and str(thread) in by_ts:
            group = by_ts[str(thread)]
        elif channel in by_channel:
            group = by_channel[channel]
        elif number and int(number.group(1)) in by_number:
            group = by_number[int(number.group(1))]
        else:
            continue
        owed[group].append((call.at, "alert" if alert else "incident"))
    result = {}
    for g in range(n_groups):
        entries = sorted(owed.get(g, []))
        result[g] = {
            "posts": len(entries),
            "busiest_minute": _busiest([at for at, _ in entries]),
            "alert_posts": sum(1 for _, kind in entries if kind == "alert"),
            "alert_busiest_minute": _busiest([at for at, kind in entries if kind == "alert"]),
        }
    return result


def _last_group_page(calls: list[Call], person: int | None) -> float:
    """When the last page of an alert's incident (not the person's) was posted."""
    pages = [
        c.at
        for c in calls
        if c.ok and c.method == "chat.postMessage" and (m := PAGED.search(str(c.params.get("text", ""))))
        if int(m.group(1)) != person
    ]
    return max(pages, default=float("nan"))


def _busiest(times: list[float]) -> int:
    """The most of `times` within any 60 s."""
    return max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)


def _s(value: object) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else "never"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--resends", type=int, default=2, help="re-sends after the first notification")
    parser.add_argument("--interval", type=float, default=20.0, help="group_interval, seconds")
    parser.add_argument("--declare-at", type=float, default=2.0, help="the person's declare, seconds into the flood")
    parser.add_argument("--actions", nargs="+", default=["propose", "declare"], choices=["propose", "declare"])
    args = parser.parse_args()
    t0 = time.perf_counter()
    sizes = (args.groups, args.alerts, args.resends, args.interval, args.declare_at)
    runs = {action: run(action, *sizes) for action in args.actions}
    baseline = run(None, *sizes)
    print()
    print(
        f"alert flood: {args.alerts} alerts in {args.groups} Alertmanager groups, sent {args.resends + 1} times"
        f" {args.interval:.0f} s apart; a person's `declare p1` {args.declare_at:.0f} s in; Slack's limits on"
    )
    header = (
        f"{'':<20} {'made':>5} {'posts/group':>12} {'busiest min':>12} {'of them alerts':>15} {'503s':>5}"
        f" {'429s':>5} {'announced':>10} {'paged':>8} {'acked':>8}"
    )
    print(header)
    print("-" * len(header))
    problems = 0
    for action, r in runs.items():
        made = r["made"].proposals if action == "propose" else r["made"].incidents
        per_group = r["per_group"].values()
        posts = max((v["posts"] for v in per_group), default=0)
        busiest = max((v["busiest_minute"] for v in per_group), default=0)
        alert_busiest = max((v["alert_busiest_minute"] for v in per_group), default=0)
        print(
            f"{'flood, ' + action:<20} {sum(made.values()):>5} {posts:>12} {busiest:>12} {alert_busiest:>15}"
            f" {r['answers'][503]:>5} {sum(r['rate_limited'].values()):>5}"
            f" {_s(r['announced_s']):>10} {_s(r['paged_s']):>8} {_s(r['ack_s']):>8}"
        )
        problems += int(not r["made"].complete(action)) + sum(1 for v in made.values() if v > 1)
        problems += int(r["announced_s"] is None) + int(r["paged_s"] is None)
        problems += sum(n for status, n in r["answers"].items() if not (200 <= status < 300 or status == 503))
    print(
        f"{'baseline, no flood':<20} {'':>5} {'':>12} {'':>12} {'':>15} {'':>5}"
        f" {sum(baseline['rate_limited'].values()):>5}"
        f" {_s(baseline['announced_s']):>10} {_s(baseline['paged_s']):>8} {_s(baseline['ack_s']):>8}"
    )
    problems += int(baseline["announced_s"] is None) + int(baseline["paged_s"] is None)
    print(
        "posts/group: the most chat.postMessage calls owed to one group; busiest min: the most in any 60 s;"
        " of them alerts: the most in any 60 s that only alerts make (proposal, group message, alert lines),"
        " the rest being what any declare posts (announcement, page, war-room briefing and lines)"
    )
    for action, r in runs.items():
        before = r["made_before_declare"]
        made_then = sum((before.proposals if action == "propose" else before.incidents).values())
        print(
            f"  {action}: {r['posts']} chat.postMessage and {r['updates']} chat.update in all; notifications"
            f" accepted {r['accepted']}, answered {dict(r['answers'])}, flushes given up {r['gave_up']};"
            f" 429s {dict(r['rate_limited'])}; {made_then} of {args.groups} made when the person declared;"
            f" flood sent in {r['flood_s']:.1f} s, its Slack work done {r['drained_s']:.1f} s after the last send"
            + (
                f"; the last alert incident paged {r['last_group_page_s']:.1f} s after the first POST"
                if isinstance(r["last_group_page_s"], float)
                else ""
            )
        )
    checks = []
    for action, r in runs.items():
        made = r["made"].proposals if action == "propose" else r["made"].incidents
        busiest = max((v["busiest_minute"] for v in r["per_group"].values()), default=0)
        alert_busiest = max((v["alert_busiest_minute"] for v in r["per_group"].values()), default=0)
        checks += [
            (
                f"{action}: {args.groups} {'proposals' if action == 'propose' else 'incidents'}",
                len(made) == args.groups and all(v == 1 for v in made.values()),
            ),
            (f"{action}: at most 3 posts per group per minute, all of them", busiest <= 3),
            (f"{action}: at most 3 posts per group per minute, of them alerts", alert_busiest <= 3),
            (
                f"{action}: the person's declare announced within 2 s",
                isinstance(r["announced_s"], float) and r["announced_s"] <= 2.0,
            ),
            (
                f"{action}: the person's declare paged within 1 s",
                isinstance(r["paged_s"], float) and r["paged_s"] <= 1.0,
            ),
        ]
    for what, met in checks:
        print(f"target: {what}: {'MET' if met else 'MISSED'}")
    print(
        f"failures: {problems}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())};"
        f" total {time.perf_counter() - t0:.1f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
