"""What piles up while Slack makes the bot wait goes as less: edits of one message collapse into
the latest, lines owed to one thread at once go as one message, and an alert group's closing
alerts are counted in its one message. Nothing owed is lost: every row is still sent (or marked
superseded by the edit that showed it), once, and in order."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from bot.delivery.dispatch import Dispatcher
from bot.domain.deliveries import post_to
from bot.domain.incidents import declare
from bot.incident import followups
from bot.sandbox.runner import BOT_TOKEN
from bot.sandbox.slack import SlackSandbox
from bot.slack.gateway import SlackGateway, make_client
from bot.store import Store

RETRY_AFTER = 3


class Killed(BaseException):
    """A SIGKILL, as far as the sender can tell: nothing after it runs."""


def _live(store, number: int, kind: str):
    return [d for d in store.deliveries(number, kind=kind) if d.status in ("pending", "sending")]


def _settled(bot, number: int = 1) -> None:
    store = bot.bot.store
    bot.slack.wait_for(lambda: not [d for d in store.deliveries(number) if d.status in ("pending", "sending")], 15)


def test_edits_of_one_message_piling_up_under_a_rate_limit_make_one_edit_with_the_latest_state(bot):
    bot.command("declare p3 Export button broken", user="U0ALICE")
    announcement = bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·")
    store = bot.bot.store
    _settled(bot)
    bot.slack.rate_limit("chat.update", times=1, retry_after=RETRY_AFTER)  # the first edit meets it

    for n in range(7):
        bot.command(f"update INC-1 identified Step {n}", user="U0ALICE")
    bot.command("update INC-1 monitoring Step 7", user="U0ALICE")

    bot.slack.wait_for(lambda: not _live(store, 1, "refresh"), timeout=30)
    refreshes = store.deliveries(1, kind="refresh")[-8:]
    edits = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == announcement.ts]
    [refused] = [c for c in edits if c.status == 429]
    after = [c for c in edits if c.ok and c.at > refused.at]
    assert len(after) == 1, [c.params.get("text") for c in after]
    assert "monitoring" in after[0].params["text"]
    # Every edit owed is accounted for: the latest sent, each earlier one superseded by a later one.
    assert [d.status for d in refreshes] == ["superseded"] * 7 + ["sent"], [(d.id, d.status) for d in refreshes]
    assert all(d.last_error and d.last_error.startswith("superseded by delivery ") for d in refreshes[:-1])
    [shown] = [m for m in bot.slack.messages_in("C0INCIDENT") if m.ts == announcement.ts]
    assert "Monitoring" in shown.all_text


def test_a_page_acked_while_its_war_room_link_edit_waits_ends_closed_and_is_never_reopened(bot):
    bot.slack.delay("conversations.create", seconds=1.5)  # the page lands before the war room
    bot.command("declare p1 Checkout down", user="U0ALICE")
    page = bot.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    store = bot.bot.store
    # Slack's chat.update allowance is spent: the link edit owed once the war room exists waits.
    # Every edit meets it until the ack is in (one 429 could go to the announcement's own edit,
    # made at the same moment, and let the link through).
    bot.slack.rate_limit("chat.update", times=1000, retry_after=RETRY_AFTER)
    bot.slack.wait_for(lambda: _live(store, 1, "page_link"))
    bot.slack.wait_for(
        lambda: [c for c in bot.slack.calls_to("chat.update") if c.status == 429 and c.params.get("ts") == page.ts]
    )
    assert _live(store, 1, "page_link"), "the link edit did not wait"

    bot.command("ack INC-1", user="U0PRIMARY")
    bot.slack.wait_for(lambda: _live(store, 1, "close_pages"))  # the close is owed behind the link
    bot.slack.clear_faults()

    bot.slack.wait_for(lambda: not _live(store, 1, "page_link") and not _live(store, 1, "close_pages"), timeout=20)
    acked = max(e.at for e in store.timeline(1) if e.kind == "ack").timestamp()
    edits = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == page.ts and c.ok]
    assert edits, "the page was never closed"
    reopened = [c for c in edits if c.at > acked and "incident_ack" in json.dumps(c.params)]
    assert not reopened, "an edit after the ack put the Acknowledge button back"
    [shown] = [m for m in bot.slack.dms_to("U0PRIMARY") if m.ts == page.ts]
    assert not shown.has_button("incident_ack") and "No action needed from you" in shown.all_text


def test_lines_owed_to_one_thread_at_once_go_as_fewer_messages_each_once_and_in_order(bot):
    bot.command("declare p3 Export button broken", user="U0ALICE")
    announcement = bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·")
    store = bot.bot.store
    _settled(bot)
    # The first line meets Slack's limit; the channel's bucket then holds the others back a while.
    bot.slack.rate_limit("chat.postMessage", times=1, retry_after=RETRY_AFTER)

    with ThreadPoolExecutor(max_workers=10) as pool:  # ten updates at once: ten lines owed at once
        list(pool.map(lambda n: bot.command(f"update INC-1 Step {n} done", user="U0ALICE"), range(10)))

    bot.slack.wait_for(lambda: not _live(store, 1, "post"), timeout=30)
    lines = store.deliveries(1, kind="post")[-10:]
    assert [d.status for d in lines] == ["sent"] * 10, [(d.id, d.status, d.last_error) for d in lines]
    calls = [c for c in bot.slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == announcement.ts]
    [refused] = [c for c in calls if c.status == 429]
    posts = [c for c in calls if c.ok and c.at > refused.at]
    assert 1 <= len(posts) < 10, len(posts)
    # Each line shown once, in the order it was owed (the rows' order); every row is recorded with
    # the ts of the message it went in.
    thread = "\n".join(m.text for m in bot.slack.thread("C0INCIDENT", announcement.ts))
    owed = [json.loads(d.detail)["text"].rsplit("\n", 1)[-1] for d in lines]
    assert sorted(owed) == sorted(f"Step {n} done" for n in range(10))
    assert all(thread.count(text) == 1 for text in owed), thread
    assert [thread.index(text) for text in owed] == sorted(thread.index(text) for text in owed), (owed, thread)
    shown = {m.ts for m in bot.slack.thread("C0INCIDENT", announcement.ts)}
    assert all(d.ts in shown for d in lines)
    assert len({d.ts for d in lines}) == len(posts)


def test_a_crash_after_a_merged_post_landed_sends_none_of_its_lines_again(tmp_path):
    """The merged message carries every row's key: each row left in doubt is found in Slack."""
    with SlackSandbox() as slack:
        store = Store(str(tmp_path / "bot.db"))
        gateway = SlackGateway(make_client(BOT_TOKEN, slack.api_url))
        now = datetime.now(UTC)
        incident = store.create_incident(
            declare(title="Checkout down", severity="P3", by="U0ALICE", now=now, channel="incident-response"),
            now,
            (),
            (),
        )
        for n in range(3):
            store.record_firing(incident.number, post_to(f"line:{n}", "C0INCIDENT", None, f"line {n}"), now)
        rows = store.deliveries(incident.number)
        routes = followups.routes(store, gateway, None, lambda: datetime.now(UTC))  # type: ignore[arg-type]
        first = Dispatcher(store, gateway, lambda: datetime.now(UTC), routes, instance="first")
        finish = store.finish_delivery

        def killed(*args, **kwargs):
            raise Killed  # the process dies right after Slack took the post

        store.finish_delivery = killed  # type: ignore[method-assign]
        with pytest.raises(Killed):
            first.send(rows[0])
        store.finish_delivery = finish  # type: ignore[method-assign]
        assert [d.status for d in store.deliveries(incident.number)] == ["sending"] * 3

        # A restart: what was left in doubt is looked up in Slack, not posted again.
        after = Dispatcher(store, gateway, lambda: datetime.now(UTC), routes, instance="after")
        after.recover_interrupted()

        rows = store.deliveries(incident.number)
        assert [d.status for d in rows] == ["sent"] * 3, [(d.status, d.last_error) for d in rows]
        [message] = [m for m in slack.messages_in("C0INCIDENT") if "line 0" in m.text]
        assert message.text == "line 0\nline 1\nline 2"
        assert {d.ts for d in rows} == {message.ts}
        assert len([c for c in slack.calls_to("chat.postMessage") if c.ok]) == 1
        store.close()
