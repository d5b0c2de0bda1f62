"""What piles up while Slack makes the bot wait goes as less: edits of one message collapse into
the latest, lines owed to one thread at once go as one message, and an alert group's closing
alerts are counted in its one message. Nothing owed is lost: every row is still sent (or marked
superseded by the edit that showed it), once, and in order."""

from __future__ import annotations

import json

RETRY_AFTER = 3


def _live(store, number: int, kind: str):
    return [d for d in store.deliveries(number, kind=kind) if d.status in ("pending", "sending")]


def _settled(bot, number: int = 1) -> None:
    store = bot.bot.store
    bot.slack.wait_for(lambda: not [d for d in store.deliveries(number) if d.status in ("pending", "sending")], 15)


def test_edits_of_one_message_piling_up_under_a_rate_limit_make_one_edit_with_the_latest_state(bot):
    bot.command("declare p3 Export button broken", user="U0ALICE")
    announcement = bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·", timeout=10)
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
    page = bot.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack", timeout=5)
    store = bot.bot.store
    # Slack's chat.update allowance is spent: the link edit owed once the war room exists waits.
    bot.slack.rate_limit("chat.update", times=1, retry_after=RETRY_AFTER)
    bot.slack.wait_for(lambda: _live(store, 1, "page_link"), timeout=10)
    bot.slack.wait_for(lambda: [c for c in bot.slack.calls_to("chat.update") if c.status == 429], timeout=10)
    assert _live(store, 1, "page_link"), "the link edit did not wait"

    bot.command("ack INC-1", user="U0PRIMARY")

    bot.slack.wait_for(lambda: not _live(store, 1, "page_link") and not _live(store, 1, "close_pages"), timeout=20)
    acked = max(e.at for e in store.timeline(1) if e.kind == "ack").timestamp()
    edits = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == page.ts and c.ok]
    assert edits, "the page was never closed"
    reopened = [c for c in edits if c.at > acked and "incident_ack" in json.dumps(c.params)]
    assert not reopened, "an edit after the ack put the Acknowledge button back"
    [shown] = [m for m in bot.slack.dms_to("U0PRIMARY") if m.ts == page.ts]
    assert not shown.has_button("incident_ack") and "No action needed from you" in shown.all_text
