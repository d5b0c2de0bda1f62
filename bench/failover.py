"""Benchmark: seeded failovers of a scripted P1 on two `serve` processes (issue 19).

Each run starts a throwaway PostgreSQL database, the Slack sandbox (in this process) and two
`incident-bot serve` processes on the database (instance-a leads, instance-b stands by; a
2 s lease, a 3 s Slack client timeout, so a delivery's sending deadline is 9 s). Then a
scripted P1: declared on a random instance; the primary paged at once and the secondary 2 s
later; the primary acknowledges from the page's button, posts an update and resolves, each on
an instance picked at random among those up. At a random moment after the declare the leader
or the instance that took the declare is sent SIGKILL (and restarted a moment later) or SIGSTOP
(and SIGCONT after a random pause, often past the lease), and Slack is slow at random on
chat.postMessage or conversations.create (answers 0.5 s to 5.5 s late, under two client
timeouts: what the delivery guarantee covers) for a few seconds.

Once everything has settled, the run is checked against the sandbox's transcript and the store:
every page owed (per person, per escalation step) arrived exactly once; every delivery the store
holds was sent, and no message carrying a delivery's key (or any other key the bot posts once
by) reached Slack twice; exactly one announcement and one war room. The seed makes a run's
plan (who is hit, how, when, what is slow) repeatable; what the processes then do is not.

    python bench/failover.py [--runs 20] [--seed 1]

Prints each run's plan and verdict, then runs, pages checked, deliveries checked, duplicates,
losses and the seeds of any failing run (exit status 1 if one failed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bot.domain.deliveries import DeliveryStatus  # noqa: E402
from bot.sandbox import runner  # noqa: E402
from bot.sandbox.slack import SlackSandbox  # noqa: E402
from bot.sandbox.slack.platform import SlackPlatform  # noqa: E402
from bot.sandbox.slack.workspace import Call, Message  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.pg import PostgresServer, start_server  # noqa: E402

LEASE_S = 2.0
SLACK_TIMEOUT_S = 3
ANNOUNCE = "C0INCIDENT"
PAGED = ("U0PRIMARY", "U0SECOND")  # the escalation steps due before the ack, one person each
UPDATE = "Rolled back the 10:02 deploy of checkout"
RESOLUTION = "Checkout is back after the rollback"
# How long a run may take to settle once the script is done: past every sending deadline (9 s)
# and a set-up claim's takeover, with room for a loaded machine.
SETTLE_S = 60.0

CONFIG = """
channel: incident-response
war_room: {severities: [P1], prefix: inc}
people:
  oncall_primary: [U0PRIMARY]
  oncall_secondary: [U0SECOND]
  vp_product: [vp@example.com]
  ceo: [U0CEO]
  tech_lead: [U0LEAD]
  support: [U0SUPPORT]
severities:
  P1:
    label: Critical
    ack_within: 60s
    update_every: 60s
    notify: [tech_lead]
    escalation:
      - {after: 0s, page: [oncall_primary]}
      - {after: 2s, page: [oncall_secondary]}
      - {after: 90s, page: [ceo]}
  P2: {ack_within: 60s, escalation: [{after: 0s, page: [oncall_primary]}]}
  P3: {ack_within: 1h, escalation: [{after: 0s, page: [support]}]}
  P4: {ack_within: 1d, escalation: [{after: 0s, page: [support]}]}
service: {project: demo-project, region: us-central1, name: tai-autonomics, health_url: "http://127.0.0.1:9/health"}
rollback: {allowed: [incident_commander, oncall_primary, tech_lead]}
"""


@dataclass(frozen=True)
class Plan:
    """What a seed decides: where the declare goes, who is hit, how and when, what Slack slows."""

    seed: int
    declare_on: int  # 0: instance-a (the leader at the start), 1: instance-b
    victim: str  # "leader" | "worker" (the instance that took the declare)
    sig: str  # "SIGKILL" | "SIGSTOP"
    at_s: float  # after the declare's answer
    down_s: float  # SIGSTOP: until SIGCONT; SIGKILL: until the process is started again
    slow_method: str | None  # "chat.postMessage" | "conversations.create" | None
    slow_s: float  # how late Slack answers those calls
    slow_for_s: float  # for how long after the declare

    @classmethod
    def from_seed(cls, seed: int) -> Plan:
        rng = random.Random(seed)
        return cls(
            seed=seed,
            declare_on=rng.randrange(2),
            victim=rng.choice(("leader", "worker")),
            sig=rng.choice(("SIGKILL", "SIGSTOP")),
            at_s=round(rng.uniform(0.0, 5.0), 2),
            down_s=round(rng.uniform(0.5, 3 * LEASE_S + 2), 2),
            slow_method=rng.choice(("chat.postMessage", "conversations.create", None)),
            slow_s=round(rng.uniform(0.5, 2 * SLACK_TIMEOUT_S - 0.5), 2),
            slow_for_s=round(rng.uniform(1.0, 8.0), 2),
        )

    def describe(self) -> str:
        slow = f"Slack {self.slow_s} s slow on {self.slow_method} for {self.slow_for_s} s" if self.slow_method else ""
        return (
            f"seed {self.seed}: declare on {'ab'[self.declare_on]}, {self.sig} the {self.victim} at +{self.at_s} s"
            f" for {self.down_s} s" + (f", {slow}" if slow else "")
        )


@dataclass
class Outcome:
    plan: Plan
    pages_checked: int = 0
    deliveries_checked: int = 0
    duplicates: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.duplicates and not self.losses


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Instance:
    """One `incident-bot serve` process of the two, restartable under the same name."""

    def __init__(self, name: str, slack: SlackSandbox, db: str, workdir: Path) -> None:
        self.name = name
        self.slack = slack
        self.port = free_port()
        config = workdir / "incident-bot.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        self.env = {
            **os.environ,
            "SLACK_BOT_TOKEN": runner.BOT_TOKEN,
            "SLACK_SIGNING_SECRET": runner.SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "INCIDENT_BOT_CONFIG": str(config),
            "INCIDENT_BOT_DB": db,
            "INCIDENT_BOT_LEASE_S": str(LEASE_S),
            "INCIDENT_BOT_INSTANCE": name,
            "INCIDENT_BOT_SLACK_TIMEOUT_S": str(SLACK_TIMEOUT_S),
            "INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE": "1",
            "PORT": str(self.port),
        }
        self.env.pop("SLACK_APP_TOKEN", None)
        self.log = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.up = False  # serving: neither killed nor stopped

    def start(self) -> None:
        for attempt in (1, 2, 3):
            with self.log.open("ab") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "serve"], env=self.env, stdout=log, stderr=log
                )
            try:
                self.wait(lambda h: h.get("status") == "ok" and h.get("instance") == self.name, 30)
                break
            except RuntimeError:
                # The free port was taken by another program between our look and the bind.
                self.process.kill()
                self.process.wait(timeout=10)
                if attempt == 3:
                    raise
                self.port = free_port()
                self.env["PORT"] = str(self.port)
        self.up = True

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
            return dict(json.loads(r.read()))

    def wait(self, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break  # it exited (its port taken?)
            try:
                if predicate(self.health()):
                    return
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: not ready after {timeout} s\n{self.log.read_text()[-2000:]}")

    @property
    def leading(self) -> bool:
        try:
            return bool(self.health().get("leader"))
        except (OSError, http.client.HTTPException, ValueError):
            return False

    @property
    def platform(self) -> SlackPlatform:
        return SlackPlatform(
            f"http://127.0.0.1:{self.port}/slack/events", runner.SIGNING_SECRET, self.slack, timeout=10.0
        )

    def hit(self, sig: str) -> None:
        assert self.process is not None
        self.up = False
        if sig == "SIGKILL":
            self.process.kill()
            self.process.wait(timeout=10)
        else:
            self.process.send_signal(signal.SIGSTOP)

    def recover(self, sig: str) -> None:
        if sig == "SIGKILL":
            self.start()
        else:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
            self.up = True

    def stop(self) -> None:
        self.up = False
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


class Script:
    """The people of the P1, sending each request to an instance that is up, again if it is lost."""

    def __init__(self, slack: SlackSandbox, store: Store, instances: list[Instance], rng: random.Random) -> None:
        self.slack = slack
        self.store = store
        self.instances = instances
        self.rng = rng
        self.stuck: list[str] = []

    def send(self, request: Any, done: Any, what: str, timeout: float = 30.0) -> bool:
        """`request(platform)` on a random instance that is up, until `done()` (the store says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [i for i in self.instances if i.up]
            if up:
                try:
                    result = request(self.rng.choice(up).platform)
                    if result.status == 200 and self._wait(done, 8.0):
                        return True
                except OSError:
                    pass  # the instance died or froze under the request: Slack retries elsewhere
            if done():
                return True
            time.sleep(0.2)
        self.stuck.append(what)
        return False

    def _wait(self, condition: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.05)
        return False

    def wait(self, condition: Any, what: str, timeout: float = 45.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.05)
        self.stuck.append(what)
        return None

    def page(self, user: str) -> Message | None:
        found = pages(self.slack, user)
        return found[0] if found else None

    def play(self, declare_on: Instance) -> bool:
        reply = declare_on.platform.command("declare p1 Checkout down", user="U0ALICE")
        if not reply.text.startswith("INC-1 "):
            self.stuck.append(f"declare: {reply.status} {reply.text[:100]!r}")
            return False
        return True

    def rest(self) -> None:
        primary = self.wait(lambda: self.page("U0PRIMARY"), "the primary's page")
        self.wait(lambda: self.page("U0SECOND"), "the secondary's page")
        incident = lambda: self.store.get(1)  # noqa: E731
        if primary is not None:
            self.send(
                lambda p: p.click(primary.button("incident_ack"), user="U0PRIMARY", channel=primary.channel),
                lambda: incident().acknowledged_at is not None,
                "the ack",
            )
        room = self.wait(lambda: incident().war_room_id, "the war room")
        if room is None:
            return
        self.send(
            lambda p: p.command(f"update {UPDATE}", user="U0ALICE", channel=room),
            lambda: any(e.kind == "update" for e in self.store.timeline(1)),
            "the update",
        )
        self.send(
            lambda p: p.command(f"resolve {RESOLUTION}", user="U0ALICE", channel=room),
            lambda: incident().resolved_at is not None,
            "the resolve",
        )


def pages(slack: SlackSandbox, user: str) -> list[Message]:
    """INC-1's pages to `user`, as posted (a page is edited later: the war room's link, the ack)."""
    dm = slack.conversation(user)
    if dm is None:
        return []
    posted = {
        str(c.response.get("ts"))
        for c in slack.calls_to("chat.postMessage")
        if c.ok
        and c.response.get("channel") == dm.id
        and "You are paged" in str(c.params.get("text"))
        and "INC-1" in str(c.params.get("text"))
    }
    return [m for m in slack.messages_in(dm.id) if m.ts in posted]


def post_key(call: Call) -> str | None:
    metadata = call.params.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    payload = (metadata or {}).get("event_payload") or {}
    return payload.get("key") if isinstance(payload, dict) else None


# Done with: sent, moot (an ack or resolve made it so), or an edit a later edit replaced.
SETTLED = {DeliveryStatus.SENT, DeliveryStatus.CANCELLED, DeliveryStatus.SUPERSEDED}


def settled(slack: SlackSandbox, store: Store) -> bool:
    incident = store.get(1)
    if incident is None or not incident.war_room_briefed or incident.announcement_ts is None:
        return False
    if any(d.status not in SETTLED for d in store.deliveries(1)):
        return False
    return slack.quiet_for() > 1.5


def check(outcome: Outcome, slack: SlackSandbox, store: Store) -> None:
    """The transcript against what was owed (module docstring)."""
    for user in PAGED:
        outcome.pages_checked += 1
        got = len(pages(slack, user))
        if got == 0:
            outcome.losses.append(f"page to {user}: never arrived")
        elif got > 1:
            outcome.duplicates.append(f"page to {user}: x{got}")
    page_targets = Counter(d.target for d in store.deliveries(1, kind="page"))
    for target, count in page_targets.items():
        if count > 1:
            outcome.duplicates.append(f"{count} page deliveries stored for {target} (one step, one person)")

    posts = [c for c in slack.calls_to("chat.postMessage") if c.ok]
    keys = Counter(k for k in (post_key(c) for c in posts) if k)
    outcome.duplicates.extend(f"{key} posted x{n}" for key, n in sorted(keys.items()) if n > 1)
    # A post without a key is the same message when it says the same thing in the same place.
    unkeyed = Counter(
        (str(c.response.get("channel")), str(c.params.get("thread_ts") or ""), str(c.params.get("text")))
        for c in posts
        if not post_key(c)
    )
    outcome.duplicates.extend(
        f"unkeyed post {text[:60]!r} in {channel} x{n}" for (channel, _, text), n in unkeyed.items() if n > 1
    )
    for delivery in store.deliveries(1):
        outcome.deliveries_checked += 1
        if delivery.status not in SETTLED:
            outcome.losses.append(f"delivery {delivery.id} ({delivery.kind} to {delivery.target}): {delivery.status}")

    announcements = [m for m in slack.top_level(ANNOUNCE) if "INC-1 ·" in m.all_text]
    if len(announcements) != 1:
        (outcome.duplicates if announcements else outcome.losses).append(f"announcements: {len(announcements)}")
    rooms = [c.response["channel"]["name"] for c in slack.calls_to("conversations.create") if c.ok]
    if len(rooms) != 1:
        (outcome.duplicates if rooms else outcome.losses).append(f"war rooms created: {rooms}")
    incident = store.get(1)
    if incident is not None and rooms and incident.war_room_name != rooms[0]:
        outcome.notes.append(f"the stored war room is {incident.war_room_name}, the first made {rooms[0]}")
    if slack.errors:
        outcome.notes.append(f"sandbox errors: {slack.errors[-1][-300:]}")


def run_one(server: PostgresServer, plan: Plan, workdir: Path) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(plan)
    name = server.create_database()
    rundir = workdir / f"seed-{plan.seed}"
    rundir.mkdir(parents=True, exist_ok=True)
    try:
        with SlackSandbox() as slack:
            a = Instance("instance-a", slack, server.url(name), rundir)
            b = Instance("instance-b", slack, server.url(name), rundir)
            store = Store(server.url(name))
            try:
                a.start()  # the first to start leads
                b.start()
                _play(plan, slack, store, [a, b], outcome)
            finally:
                a.stop()
                b.stop()
                store.close()
    finally:
        server.drop_database(name)
    outcome.seconds = time.monotonic() - started
    if not outcome.ok:
        outcome.notes.append(f"logs in {rundir}")
    return outcome


def _play(plan: Plan, slack: SlackSandbox, store: Store, instances: list[Instance], outcome: Outcome) -> None:
    rng = random.Random(plan.seed * 7919 + 1)  # the script's routing, apart from the plan's draws
    worker = instances[plan.declare_on]
    leader = next(i for i in instances if i.leading)
    victim = leader if plan.victim == "leader" else worker
    script = Script(slack, store, instances, rng)
    if plan.slow_method:
        slack.delay(plan.slow_method, plan.slow_s)
    if not script.play(worker):
        outcome.losses.extend(script.stuck)
        return
    declared = time.monotonic()

    def fault() -> None:
        time.sleep(max(0.0, plan.at_s - (time.monotonic() - declared)))
        victim.hit(plan.sig)
        time.sleep(plan.down_s)
        victim.recover(plan.sig)

    def clear_slowness() -> None:
        time.sleep(max(0.0, plan.slow_for_s - (time.monotonic() - declared)))
        slack.clear_faults()

    threads = [threading.Thread(target=fault, daemon=True), threading.Thread(target=clear_slowness, daemon=True)]
    for thread in threads:
        thread.start()
    script.rest()
    for thread in threads:
        thread.join(timeout=60)
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline and not settled(slack, store):
        time.sleep(0.1)
    outcome.losses.extend(f"stuck waiting for {what}" for what in script.stuck)
    check(outcome, slack, store)


def series(runs: int, seed: int, workdir: Path | None = None) -> list[Outcome]:
    """`runs` runs, seeds `seed`, `seed + 1`, ...; each printed as it ends."""
    running, why = start_server()
    if running is None:
        raise SystemExit(f"no PostgreSQL server: {why}")
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-failover-"))
    outcomes = []
    try:
        for n in range(runs):
            plan = Plan.from_seed(seed + n)
            outcome = run_one(running.server, plan, workdir)
            outcomes.append(outcome)
            verdict = "ok" if outcome.ok else "FAILED " + "; ".join(outcome.duplicates + outcome.losses)
            print(f"  {plan.describe()}: {verdict} ({outcome.seconds:.1f} s)", flush=True)
            for note in outcome.notes:
                print(f"    {note}", flush=True)
    finally:
        running.stop()
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    failed = [o.plan.seed for o in outcomes if not o.ok]
    kills = sum(1 for o in outcomes if o.plan.sig == "SIGKILL")
    return "\n".join(
        [
            f"runs: {len(outcomes)} ({kills} SIGKILL, {len(outcomes) - kills} SIGSTOP)",
            f"pages checked: {sum(o.pages_checked for o in outcomes)}",
            f"deliveries checked: {sum(o.deliveries_checked for o in outcomes)}",
            f"duplicates: {sum(len(o.duplicates) for o in outcomes)}",
            f"losses: {sum(len(o.losses) for o in outcomes)}",
            f"failing seeds: {', '.join(map(str, failed)) or 'none'}",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="the first run's seed; the next runs take the next ones")
    args = parser.parse_args()
    # SIGTERM (a stopped run) leaves through `finally`, so the PostgreSQL server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    print(f"seeded failovers of a scripted P1 on two serve processes (lease {LEASE_S} s):", flush=True)
    outcomes = series(args.runs, args.seed)
    print()
    print(summary(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
