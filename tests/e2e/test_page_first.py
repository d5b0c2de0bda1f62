"""A page goes the moment the incident is committed: never behind the announcement, the war room
or its briefing. The page DM is edited to link the war room once the room exists."""

from __future__ import annotations


def test_the_page_goes_before_the_war_room_exists_and_is_edited_to_link_it(bot):
    bot.slack.delay("conversations.create", seconds=2.5)  # the war room takes its time

    bot.command("declare p1 Checkout down", user="U0ALICE")

    page = bot.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")
    assert bot.slack.channel_by_name("inc-1-checkout-down") is None, "the page waited for the war room"
    assert "war room link follows" in page.all_text
    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-checkout-down"))
    edited = bot.slack.wait_for_dm("U0PRIMARY", f"<#{room.id}>", with_button="incident_ack")
    assert edited.ts == page.ts, "a second page was posted instead of the first being edited"
    assert len([m for m in bot.slack.dms_to("U0PRIMARY") if "You are paged" in m.text]) == 1


def test_a_page_acknowledged_before_the_war_room_exists_is_not_edited_back_open(bot):
    bot.slack.delay("conversations.create", seconds=2.5)
    bot.command("declare p1 Checkout down", user="U0ALICE")
    bot.slack.wait_for_dm("U0PRIMARY", "You are paged", with_button="incident_ack")

    bot.command("ack INC-1", user="U0PRIMARY")

    bot.slack.wait_for_dm("U0PRIMARY", "No action needed from you")
    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-checkout-down"))
    bot.slack.wait_for(
        lambda: [d for d in bot.bot.store.deliveries(1, kind="page_link") if d.status == "sent"], timeout=10
    )
    [page] = [m for m in bot.slack.dms_to("U0PRIMARY") if "INC-1" in m.all_text and m.ts]
    assert not page.has_button("incident_ack") and f"<#{room.id}>" not in page.all_text
