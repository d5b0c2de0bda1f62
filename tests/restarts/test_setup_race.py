"""The set-up race of issue 19, end to end: two `incident-bot serve` processes on one PostgreSQL.

An incident's set-up (announcement, war room) runs on the instance that took the declare, on
its request path; the leader's set-up round (`finish_setups`, at every lease gain and every
minute) looks for incidents whose set-up is unfinished. With Slack slow to create the war room,
the round can run on the other instance while the first one's `conversations.create` is still
on the wire: both would make a war room (`inc-1-…` and `inc-1-…-2`). The set-up is claimed in
the store (`setup_claims`), so the round leaves it to its holder.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from bot.store import Store
from tests.restarts.test_two_instances import LEASE_S, Instance

# Slack takes this long to carry out a conversations.create: longer than the other instance
# needs to take the lease over (LEASE_S and one renewal interval), shorter than the client's
# timeout below, so the first instance's call ends well and its set-up goes on.
CREATE_DELAY_S = 6.0
SLACK_TIMEOUT_S = 10
ROOM = "inc-1-checkout-down"


@contextmanager
def two_instances(
    tmp_path: Path, pg_url: str, slack_timeout_s: int
) -> Iterator[tuple[SlackSandbox, Instance, Instance]]:
    with SlackSandbox() as slack:
        a = Instance(tmp_path, slack, "instance-a", pg_url)
        b = Instance(tmp_path, slack, "instance-b", pg_url)
        for instance in (a, b):
            instance.env["INCIDENT_BOT_SLACK_TIMEOUT_S"] = str(slack_timeout_s)
        try:
            a.start()
            b.start()
            assert a.health()["leader"] is True and b.health()["leader"] is False
            yield slack, a, b
        finally:
            a.stop()
            b.stop()


@pytest.fixture
def world(tmp_path: Path, pg_url: str) -> Iterator[tuple[SlackSandbox, Instance, Instance]]:
    with two_instances(tmp_path, pg_url, SLACK_TIMEOUT_S) as running:
        yield running


def test_the_leaders_setup_round_during_another_instances_slow_setup_makes_one_war_room_and_one_announcement(
    world, pg_url
) -> None:
    slack, a, b = world
    slack.delay("conversations.create", CREATE_DELAY_S)
    SlackPlatform(a.url, SIGNING_SECRET, slack).command("declare p1 Checkout down", user="U0ALICE")
    store = Store(pg_url)
    try:
        # a announced INC-1 and is making its war room (the attempt is noted just before the call).
        first = slack.wait_for(lambda: store.attempt("war-room:1"), timeout=10, what="a's war-room attempt")
        assert store.get(1).war_room_id is None
        # a freezes with its create on the wire; b takes the lease and runs the set-up round at once.
        a.signal(signal.SIGSTOP)
        b.wait_until(lambda h: h["leader"] is True, timeout=LEASE_S + 5)
        assert store.get(1).war_room_id is None, "the round must run while a's set-up is unfinished"
        # b's round has looked at INC-1: left it to a (or, with no claim, noted a war-room attempt
        # of its own, just before its own create).
        slack.wait_for(
            lambda: (
                "INC-1: its set-up is under way on another instance" in b.log.read_text()
                or store.attempt("war-room:1").at != first.at
            ),
            timeout=10,
            what="b's set-up round",
        )
        a.signal(signal.SIGCONT)  # a, now a standby, hears Slack's answer and finishes its set-up
        slack.wait_for(lambda: store.get(1).war_room_briefed, timeout=CREATE_DELAY_S + 15, what="the war room briefed")
        slack.clear_faults()
        # Every call either instance made has been answered, a second create's included.
        slack.wait_for(lambda: slack.quiet_for() > 1.0, timeout=3 * CREATE_DELAY_S + 10, what="Slack quiet")
        incident = store.get(1)
    finally:
        store.close()

    created = [c for c in slack.calls_to("conversations.create") if c.ok]
    assert [c.response["channel"]["name"] for c in created] == [ROOM], "a second war room was made"
    room = slack.channel_by_name(ROOM)
    assert room is not None and incident.war_room_id == room.id
    announcements = [m for m in slack.top_level("C0INCIDENT") if "INC-1 ·" in m.all_text]
    assert len(announcements) == 1, f"announced {len(announcements)} times"
    assert incident.announcement_ts == announcements[0].ts
    briefs = [m for m in slack.messages_in(room.id) if "first steps" in m.all_text]
    assert len(briefs) == 1
    links = [m for m in slack.thread("C0INCIDENT", announcements[0].ts) if m.text.startswith("War room: <#")]
    assert len(links) == 1
    # b's round did run during a's set-up, and left it to a.
    assert "INC-1: its set-up is under way on another instance" in b.log.read_text()
    assert "instance-b took the lease" in b.log.read_text()


def test_a_set_up_whose_instance_dies_mid_create_is_finished_by_the_leader_once_its_claim_lapses(
    tmp_path: Path, pg_url: str
) -> None:
    """The standby that took the declare is killed with its conversations.create on the wire
    (Slack carries it out 1.5 s later). Its claim lapses after one sending deadline (3 timeouts:
    6 s here); the leader takes the set-up over, finds the channel the dead one made, and adopts
    it: one war room, briefed, linked, within seconds rather than at the next minute's round."""
    timeout_s = 2
    with two_instances(tmp_path, pg_url, timeout_s) as (slack, a, b):
        slack.delay("conversations.create", 1.5)
        SlackPlatform(b.url, SIGNING_SECRET, slack).command("declare p1 Checkout down", user="U0ALICE")
        store = Store(pg_url)
        try:
            slack.wait_for(lambda: store.attempt("war-room:1"), timeout=10, what="b's war-room attempt")
            b.kill()
            killed = time.monotonic()
            slack.wait_for(lambda: store.get(1).war_room_briefed, timeout=30, what="the war room briefed")
            finished_after = time.monotonic() - killed
            slack.clear_faults()
            slack.wait_for(lambda: slack.quiet_for() > 1.0, timeout=20, what="Slack quiet")
            incident = store.get(1)
            assert store.lapsed_setups(datetime.now(UTC) + timedelta(hours=1)) == []
        finally:
            store.close()
    assert finished_after < 3 * timeout_s + 10, f"set up {finished_after:.1f} s after the kill"
    created = [c for c in slack.calls_to("conversations.create") if c.ok]
    assert [c.response["channel"]["name"] for c in created] == [ROOM], "a second war room was made"
    assert incident.war_room_id == created[0].response["channel"]["id"]
    announcements = [m for m in slack.top_level("C0INCIDENT") if "INC-1 ·" in m.all_text]
    assert len(announcements) == 1
    assert len([m for m in slack.messages_in(incident.war_room_id) if "first steps" in m.all_text]) == 1
    assert "INC-1: its set-up claim lapsed" in a.log.read_text()


def test_a_set_up_whose_announcement_timed_out_is_taken_up_after_its_claim_lapses_and_not_posted_twice(
    tmp_path: Path, pg_url: str
) -> None:
    """Slack carries the standby's announcement out 2.5 s after the call, past the client's 2 s
    timeout: the standby's set-up fails. Its claim is kept, not released: the leader takes the
    set-up up once it lapses (not at the next minute's round), finds the announcement that
    landed meanwhile by its key, and goes on with the war room. One announcement."""
    timeout_s = 2
    with two_instances(tmp_path, pg_url, timeout_s) as (slack, a, b):
        slack.delay("chat.postMessage", timeout_s + 0.5)
        SlackPlatform(b.url, SIGNING_SECRET, slack).command("declare p1 Checkout down", user="U0ALICE")
        slack.wait_for(
            lambda: [m for m in slack.top_level("C0INCIDENT") if "INC-1 ·" in m.all_text], timeout=10, what="the post"
        )
        slack.clear_faults()
        store = Store(pg_url)
        try:
            slack.wait_for(lambda: store.get(1).war_room_briefed, timeout=30, what="the war room briefed")
            slack.wait_for(lambda: slack.quiet_for() > 1.0, timeout=20, what="Slack quiet")
            incident = store.get(1)
        finally:
            store.close()
    announcements = [m for m in slack.top_level("C0INCIDENT") if "INC-1 ·" in m.all_text]
    assert len(announcements) == 1, f"announced {len(announcements)} times"
    assert incident.announcement_ts == announcements[0].ts
    assert [c.response["channel"]["name"] for c in slack.calls_to("conversations.create") if c.ok] == [ROOM]
    assert "INC-1: its set-up claim lapsed" in a.log.read_text()
