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
from collections.abc import Iterator
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


@pytest.fixture
def world(tmp_path: Path, pg_url: str) -> Iterator[tuple[SlackSandbox, Instance, Instance]]:
    with SlackSandbox() as slack:
        a = Instance(tmp_path, slack, "instance-a", pg_url)
        b = Instance(tmp_path, slack, "instance-b", pg_url)
        for instance in (a, b):
            instance.env["INCIDENT_BOT_SLACK_TIMEOUT_S"] = str(SLACK_TIMEOUT_S)
        try:
            a.start()
            b.start()
            assert a.health()["leader"] is True and b.health()["leader"] is False
            yield slack, a, b
        finally:
            a.stop()
            b.stop()


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
