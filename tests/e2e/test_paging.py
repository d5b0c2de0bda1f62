"""Paging, escalation and acknowledgement end to end, with second-scale delays (see FAST_CONFIG)."""

from __future__ import annotations

import time
from datetime import timedelta

from bot.sandbox.runner import SandboxedBot

PRIMARY, SECOND, VP, CEO, LEAD, SUPPORT = (
    "U0PRIMARY",
    "U0SECOND",
    "U0VP",
    "U0CEO",
    "U0LEAD",
    "U0SUPPORT",
)


def pages_to(bot, user):
    return [m for m in bot.slack.dms_to(user) if not m.is_reply and "You are paged" in m.all_text]


def settle(bot, number: int = 1, quiet_s: float = 1.0) -> None:
    """Wait until nothing is left to send, then past the moment a late duplicate would arrive
    (a re-plan or a retry fires within a few hundred ms at these durations), and again."""
    store = bot.bot.store
    for _ in range(2):
        bot.slack.wait_for(
            lambda: not [d for d in store.deliveries(number) if d.status in ("pending", "sending")], timeout=10
        )
        time.sleep(quiet_s / 2)


def test_primary_is_paged_at_once_and_the_secondary_after_the_delay(fast_bot):
    declared = time.monotonic()
    fast_bot.command("declare p1 Checkout down", user="U0ALICE")

    page = fast_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    assert page.button("incident_ack")["value"] == "1"
    assert "INC-1" in page.all_text
    # Paged before the war room may exist; the page is edited to link it once it does.
    room = fast_bot.slack.wait_for(lambda: fast_bot.bot.store.get(1).war_room_id)
    linked = fast_bot.slack.wait_for_dm(PRIMARY, f"War room: <#{room}>", with_button="incident_ack")
    assert linked.ts == page.ts
    fast_bot.slack.wait_for_dm(VP, "FYI")  # notify roles: told at once, nothing to press
    assert not fast_bot.slack.wait_for_dm(VP, "FYI").has_button("incident_ack")
    assert not pages_to(fast_bot, SECOND)

    fast_bot.slack.wait_for_dm(SECOND, "You are paged", with_button="incident_ack")
    assert time.monotonic() - declared >= 1.9  # the step is `after: 2s`
    fast_bot.slack.wait_for_message(room, "Paged <@U0SECOND>")


def test_acknowledge_on_the_page_stops_escalation_and_a_double_click_acks_once(fast_bot):
    fast_bot.command("declare p1 Checkout down")
    page = fast_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")

    first = fast_bot.click(page.button("incident_ack"), user=PRIMARY)
    second = fast_bot.click(page.button("incident_ack"), user=PRIMARY)

    assert first.status == 200 and second.status == 200
    first.wait_response(lambda r: "You acknowledged INC-1" in r.text)
    second.wait_response(lambda r: "already acknowledged" in r.text)
    incident = fast_bot.bot.store.get(1)
    assert incident.acknowledged_by == PRIMARY
    assert [a.action for a in fast_bot.bot.store.audit_log(1)].count("ack") == 1
    time.sleep(4.5)  # past the secondary's (2s) and VP's (4s) steps
    assert not pages_to(fast_bot, SECOND) and not pages_to(fast_bot, VP)
    closed = fast_bot.slack.wait_for(lambda: not page_message(fast_bot, PRIMARY).has_button("incident_ack"))
    assert closed
    assert "not acknowledged" not in " ".join(m.all_text for m in fast_bot.slack.messages_in(incident.war_room_id))


def page_message(bot, user):
    return (
        pages_to(bot, user)[0]
        if pages_to(bot, user)
        else next(m for m in bot.slack.dms_to(user) if not m.is_reply and "INC-" in m.all_text)
    )


def test_ack_from_the_announcement_tells_the_others_to_stand_down(fast_bot):
    fast_bot.command("declare p1 Checkout down")
    fast_bot.slack.wait_for_dm(SECOND, "You are paged")
    announcement = fast_bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·", with_button="incident_ack")

    fast_bot.click(announcement.button("incident_ack"), user=SECOND, channel="C0INCIDENT")

    fast_bot.slack.wait_for_dm(PRIMARY, "acknowledged by <@U0SECOND>. You can stand down")
    fast_bot.slack.wait_for(
        lambda: (
            not [m for m in fast_bot.slack.messages_in("C0INCIDENT") if m.ts == announcement.ts][0].has_button(
                "incident_ack"
            )
        )
    )


def test_an_unacknowledged_incident_gets_an_sla_breach_warning(fast_bot):
    fast_bot.command("declare p1 Checkout down")
    room = fast_bot.slack.wait_for(lambda: fast_bot.bot.store.get(1).war_room_id)

    warning = fast_bot.slack.wait_for_message(room, "is not acknowledged")
    assert "3s" in warning.all_text and "<@U0PRIMARY>" in warning.all_text


def test_ack_command_and_bad_input(fast_bot):
    nothing = fast_bot.command("ack")
    assert "There is no open incident" in nothing.text

    fast_bot.command("declare p2 Search is slow")
    fast_bot.slack.wait_for_dm(PRIMARY, "You are paged")
    unknown_role = fast_bot.command("page INC-1 nightwatch")
    assert "`nightwatch` is neither a person" in unknown_role.text and "oncall_primary" in unknown_role.text
    bad_role = fast_bot.command("role INC-1 overlord @bob")
    assert "`overlord` is not an incident role" in bad_role.text
    assert fast_bot.bot.store.get(1).commander == PRIMARY
    assert "You acknowledged INC-1" in fast_bot.command("ack INC-1", user=SECOND).text
    assert "already acknowledged by <@U0SECOND>" in fast_bot.command("ack", user=PRIMARY).text


def test_manual_page_and_role_change(fast_bot):
    fast_bot.command("declare p3 Export button broken")
    fast_bot.slack.wait_for_dm(SUPPORT, "You are paged")

    reply = fast_bot.command("page @bob")
    assert reply.text == "Paging <@U0BOB> for INC-1."
    fast_bot.slack.wait_for_dm("U0BOB", "You are paged", with_button="incident_ack")

    reply = fast_bot.command("role commander @alice")
    assert reply.text == "<@U0ALICE> is now commander of INC-1."
    fast_bot.slack.wait_for_dm("U0ALICE", "commander")
    fast_bot.slack.wait_for_message("C0INCIDENT", "<@U0ALICE>")
    assert fast_bot.bot.store.get(1).commander == "U0ALICE"
    assert "role" in [a.action for a in fast_bot.bot.store.audit_log(1)]


def test_raising_severity_opens_a_war_room_and_pages_the_new_path(fast_bot):
    fast_bot.command("declare p3 Export button broken")
    fast_bot.slack.wait_for_dm(SUPPORT, "You are paged")
    assert fast_bot.bot.store.get(1).war_room_id is None

    assert fast_bot.command("severity INC-1 p1").text == "INC-1 is now P1 · Critical."

    fast_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    fast_bot.slack.wait_for_dm(LEAD, "FYI")
    room = fast_bot.slack.wait_for(lambda: fast_bot.bot.store.get(1).war_room_id)
    fast_bot.slack.wait_for_message(room, "first steps")
    # Lowering never un-pages: the support page stays as it was, and nothing new goes out.
    fast_bot.command("ack INC-1")
    assert fast_bot.command("severity INC-1 p4").text == "INC-1 is now P4 · Low."
    settle(fast_bot)
    assert len([m for m in fast_bot.slack.dms_to(SUPPORT) if not m.is_reply]) == 1


def test_a_page_that_slack_keeps_refusing_is_retried_until_it_goes_out(fast_bot):
    fast_bot.bot.deliveries.retry_base = timedelta(milliseconds=200)
    # More failures than slack_sdk's own retries absorb: the page must survive them.
    fast_bot.slack.fail("conversations.open", status=500, times=8)

    fast_bot.command("declare p3 Export button broken")

    fast_bot.slack.wait_for_dm(SUPPORT, "You are paged", with_button="incident_ack", timeout=15)
    settle(fast_bot)  # past the next retry (200 ms backoff), had the page been retried once sent
    delivered = fast_bot.bot.store.deliveries(1, kind="page")
    assert [d.status for d in delivered] == ["sent"] and delivered[0].attempts >= 2
    assert len([m for m in fast_bot.slack.dms_to(SUPPORT) if not m.is_reply]) == 1


def test_an_email_nobody_has_is_reported_not_dropped(fast_bot):
    fast_bot.bot.deliveries.retry_base = timedelta(milliseconds=100)
    fast_bot.command("declare p2 Search is slow")
    fast_bot.slack.wait_for_dm(PRIMARY, "You are paged")

    fast_bot.command("page INC-1 nobody_email")

    room = fast_bot.slack.wait_for(lambda: fast_bot.bot.store.get(1).war_room_id)
    warning = fast_bot.slack.wait_for_message(room, "Could not page nobody_email")
    assert "no Slack user has the email ghost@example.com" in warning.all_text
    assert fast_bot.bot.store.deliveries(1, kind="page", status="pending")


def test_a_manual_page_after_the_ack_still_goes_out(fast_bot):
    fast_bot.command("declare p2 Search is slow")
    fast_bot.slack.wait_for_dm(PRIMARY, "You are paged")
    fast_bot.command("ack INC-1")

    fast_bot.command("page INC-1 tech_lead")

    fast_bot.slack.wait_for_dm(LEAD, "You are paged", with_button="incident_ack")


def test_a_role_held_by_two_people_pages_both_once():
    from bot.sandbox.runner import SandboxedBot
    from tests.conftest import FAST_CONFIG

    config = FAST_CONFIG.replace("oncall_primary: [U0PRIMARY]", "oncall_primary: [U0PRIMARY, alice@example.com]")
    with SandboxedBot(config_text=config) as running:
        running.command("declare p2 Search is slow", user="U0BOB")

        running.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
        running.slack.wait_for_dm("U0ALICE", "You are paged", with_button="incident_ack")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
        running.slack.wait_for_message(room, "Paged <@U0PRIMARY>, <@U0ALICE>")
        settle(running)
        assert len(pages_to(running, PRIMARY)) == 1 and len(pages_to(running, "U0ALICE")) == 1
        assert not running.slack.refusals()


def test_an_interrupted_post_in_a_thread_is_found_there_not_sent_twice(bot):
    """P3 has no war room: the "who was paged" line goes under the announcement, in its thread."""
    bot.command("declare p3 Export button broken")
    note = bot.slack.wait_for_message("C0INCIDENT", "Paged <@U0SUPPORT>")
    assert note.is_reply
    store = bot.bot.store
    # The post lands in Slack a moment before the store records it as sent.
    [delivery] = bot.slack.wait_for(lambda: store.deliveries(1, kind="paged_note", status="sent"))
    assert delivery.thread_ts == note.thread_ts

    # As if the process had died after Slack took the post but before the store heard back, and
    # its sending deadline had passed since (before it, nobody may look the post up).
    with store.transaction() as db:
        db.execute(
            "UPDATE deliveries SET status = 'sending', ts = NULL, claim_until = ? WHERE id = ?",
            ["2000-01-01T00:00:00+00:00", delivery.id],
        )
    bot.bot.deliveries.recover_interrupted()

    [recovered] = store.deliveries(1, kind="paged_note")
    assert (recovered.status, recovered.ts) == ("sent", note.ts)
    settle(bot)
    assert len([m for m in bot.slack.messages_in("C0INCIDENT") if "Paged <@U0SUPPORT>" in m.all_text]) == 1


def test_one_unreachable_holder_does_not_stop_the_others_being_paged():
    from bot.sandbox.runner import SandboxedBot
    from tests.conftest import FAST_CONFIG

    config = FAST_CONFIG.replace("oncall_primary: [U0PRIMARY]", "oncall_primary: [gone@example.com, U0PRIMARY]")
    with SandboxedBot(config_text=config) as running:
        running.command("declare p2 Search is slow", user="U0BOB")

        running.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
        note = running.slack.wait_for_message(room, "Paged <@U0PRIMARY>")
        assert "Could not reach: no Slack user has the email gone@example.com" in note.all_text


def test_a_page_still_being_sent_when_someone_acknowledges_is_closed_once_it_lands(fast_bot):
    # conversations.open is slow: the page is composed before the ack and lands after it.
    fast_bot.slack.delay("conversations.open", 1.5)
    fast_bot.command("declare p1 Checkout down", user="U0ALICE")
    store = fast_bot.bot.store
    fast_bot.slack.wait_for(
        lambda: [d for d in store.deliveries(1, kind="page") if d.status == "sending" and d.target == "oncall_primary"]
    )
    assert not pages_to(fast_bot, PRIMARY)

    assert "You acknowledged INC-1" in fast_bot.command("ack INC-1", user="U0ALICE").text

    page = fast_bot.slack.wait_for(lambda: [m for m in fast_bot.slack.dms_to(PRIMARY) if not m.is_reply])[0]
    fast_bot.slack.wait_for(lambda: "acknowledged by <@U0ALICE>" in page_now(fast_bot, PRIMARY, page.ts).all_text)
    assert not page_now(fast_bot, PRIMARY, page.ts).has_button("incident_ack")
    fast_bot.slack.wait_for_dm(PRIMARY, "acknowledged by <@U0ALICE>. You can stand down")
    fast_bot.slack.clear_faults()
    settle(fast_bot)
    stand_downs = [m for m in fast_bot.slack.thread(PRIMARY, page.ts) if "stand down" in m.all_text]
    assert len(stand_downs) == 1


def page_now(bot, user, ts):
    return next(m for m in bot.slack.dms_to(user) if m.ts == ts)


def test_resolve_leaves_no_live_acknowledge_button_on_any_page(fast_bot):
    fast_bot.command("declare p1 Checkout down", user="U0ALICE")
    fast_bot.slack.wait_for_dm(PRIMARY, "You are paged", with_button="incident_ack")
    fast_bot.slack.wait_for_dm(SECOND, "You are paged", with_button="incident_ack")

    fast_bot.command("resolve INC-1 False alarm", user="U0ALICE")

    settle(fast_bot)
    pages = [
        m for user in (PRIMARY, SECOND) for m in fast_bot.slack.dms_to(user) if not m.is_reply and "INC-1" in m.all_text
    ]
    assert len(pages) >= 2
    assert [m for m in pages if m.has_button("incident_ack")] == []
    assert all("was resolved" in m.all_text for m in pages)


def test_acknowledging_by_command_edits_the_announcement(fast_bot):
    fast_bot.command("declare p2 Search is slow", user="U0ALICE")
    announcement = fast_bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·", with_button="incident_ack")

    fast_bot.command("ack INC-1", user=SECOND)

    edited = fast_bot.slack.wait_for(
        lambda: next(
            (
                m
                for m in fast_bot.slack.messages_in("C0INCIDENT")
                if m.ts == announcement.ts and m.edited and not m.has_button("incident_ack")
            ),
            None,
        )
    )
    assert "*Acknowledged*" in edited.all_text and "<@U0SECOND>" in edited.all_text


def fix_clock_bot() -> SandboxedBot:
    from tests.conftest import FAST_CONFIG

    config = FAST_CONFIG.replace(
        """  P2:
    label: High
    ack_within: 60s""",
        """  P2:
    label: High
    ack_within: 60s
    fix_within: 3s""",
    )
    return SandboxedBot(config_text=config)


def test_the_fix_clock_nudges_when_no_fix_is_under_way():
    with fix_clock_bot() as running:
        declared = time.monotonic()
        running.command("declare p2 Search is slow", user="U0ALICE")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)

        nudge = running.slack.wait_for_message(room, "no fix under way")

        assert time.monotonic() - declared >= 2.5  # `fix_within: 3s`
        assert "INC-1" in nudge.all_text
        assert [d.status for d in running.bot.store.deliveries(1, kind="fix_nudge")] == ["sent"]
        assert not running.slack.refusals()


def test_a_diagnose_stops_the_fix_clock():
    with fix_clock_bot() as running:
        declared = time.monotonic()
        running.command("declare p2 Search is slow", user="U0ALICE")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)

        running.command("diagnose INC-1", user="U0ALICE", channel=room)

        running.slack.wait_for(lambda: running.bot.store.get(1).fix_started_at, timeout=3)
        time.sleep(max(0.0, declared + 4.0 - time.monotonic()))  # past `fix_within: 3s`
        settle(running)
        assert not [m for m in running.slack.messages_in(room) if "no fix under way" in m.all_text]
        assert "sla:fix" not in running.bot.store.fired_keys(1)
        assert not running.slack.refusals()


def test_a_page_slack_answers_after_the_client_gave_up_is_looked_up_after_its_deadline_not_sent_twice():
    """Slack takes 10.5 s to answer a post and carries it out all the same; the client gives up
    after 4 s. The bot's retry (due after a 5 s backoff) must not ask Slack before the sending
    deadline (3 client timeouts, 12 s), or it finds nothing yet and pages a second time."""
    from bot.sandbox.runner import SandboxedBot
    from tests.conftest import FAST_CONFIG

    with SandboxedBot(config_text=FAST_CONFIG, slack_timeout_s=4) as running:
        running.command("declare p3 Export button broken")
        running.slack.wait_for_dm(SUPPORT, "You are paged")
        settle(running)
        running.slack.delay("chat.postMessage", 10.5)
        started = time.monotonic()
        running.command("page @bob")
        running.slack.wait_for_dm("U0BOB", "You are paged", timeout=20)
        store = running.bot.store
        page = next(d for d in store.deliveries(1, kind="page") if d.target == "U0BOB")
        running.slack.wait_for(lambda: store.deliveries(1, kind="page", status="sent")[-1].id == page.id, timeout=20)
        running.slack.clear_faults()
        settle(running)
        assert len(pages_to(running, "U0BOB")) == 1, "the page went out twice"
        [sent] = [d for d in store.deliveries(1, kind="page") if d.id == page.id]
        assert sent.status == "sent" and sent.attempts == 2, "sent once, found in Slack by its retry"
        assert time.monotonic() - started >= 12.0, "looked up only after the deadline"
