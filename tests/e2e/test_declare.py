"""Declaring, listing, updating and resolving through real HTTP, with Slack played by the sandbox."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

ANNOUNCE = "C0INCIDENT"


def announcement(bot, number=1):
    return bot.slack.wait_for_message(ANNOUNCE, f"INC-{number} ·", with_button="incident_resolve")


def posted_params(bot) -> str:
    """Everything the bot sent to the Web API, as one string, to look for leaks."""
    return json.dumps([c.params for c in bot.slack.calls], ensure_ascii=False)


def test_declare_p1_announces_opens_a_war_room_and_briefs_it(bot):
    reply = bot.command("declare p1 Checkout returns 500", user="U0ALICE")

    assert reply.status == 200
    assert reply.text.startswith("INC-1 declared (P1 · Critical)")
    message = announcement(bot)
    assert "Checkout returns 500" in message.all_text
    assert [b["action_id"] for b in message.buttons()] == [
        "incident_ack",
        "incident_post_update",
        "incident_diagnose",
        "incident_resolve",
    ]
    # The topic is set just after the channel is made, and the invite just after that: wait for
    # both, do not race them.
    room = bot.slack.wait_for(
        lambda: (
            (found := bot.slack.channel_by_name("inc-1-checkout-returns-500"))
            and found.topic
            and "U0ALICE" in found.members
            and found
        )
    )
    assert "INC-1" in room.topic and "Checkout returns 500" in room.topic
    assert "U0ALICE" in room.members
    steps = bot.slack.wait_for_message(room.id, "first steps")
    assert "Acknowledge" in steps.all_text and "/incident diagnose" in steps.all_text
    reply.wait_response(lambda r: "War room" in r.text)
    incident = bot.bot.store.get(1)
    assert incident.war_room_id == room.id and incident.announcement_ts == message.ts
    assert incident.commander == "U0ALICE"
    assert [e.kind for e in bot.bot.store.timeline(1)] == ["declare"]
    assert "declare" in [a.action for a in bot.bot.store.audit_log(1)]


def test_p3_gets_no_war_room(bot):
    bot.command("declare p3 Typo on the pricing page")
    announcement(bot)
    time.sleep(0.3)
    assert not bot.slack.calls_to("conversations.create")


@pytest.mark.parametrize(
    "signing",
    [
        {"signature": "v0=" + "0" * 64},
        {"sign": False},
        {"timestamp": int(time.time()) - 6 * 60},
    ],
    ids=["forged", "unsigned", "six-minutes-old"],
)
def test_requests_without_a_valid_signature_are_refused(bot, signing):
    reply = bot.command("declare p1 Forged outage", **signing)

    assert reply.status == 401
    assert bot.bot.store.count_incidents() == 0
    assert not bot.slack.calls_to("chat.postMessage")


@pytest.mark.parametrize(
    ("text", "expected", "usage_of"),
    [
        ("declare p9 Checkout down", "`p9` is not a severity", "declare"),
        ("declare Checkout down", "`Checkout` is not a severity", "declare"),
        ("frobnicate now", "There is no `frobnicate` subcommand", "help"),
        ("ack INC-99", "INC-99 does not exist", "ack"),
        ("resolve", "There is no open incident", "resolve"),
        ("declare p1 " + "\u200b\u0000\n\t ", "The incident needs a title.", "declare"),
    ],
)
def test_bad_input_gets_a_short_explanation_and_changes_nothing(bot, text, expected, usage_of):
    import commands

    reply = bot.command(text)

    assert reply.status == 200
    explanation, usage = reply.text.split("\n")
    assert explanation.startswith(expected)
    assert usage == f"Usage: `{commands.REGISTRY[usage_of].usage}`"
    assert reply.body.get("response_type") == "ephemeral"
    assert "Traceback" not in reply.text
    assert bot.bot.store.count_incidents() == 0
    assert not bot.slack.calls_to("chat.postMessage")


def test_a_50_kb_title_is_refused_with_the_limit_and_never_sent(bot):
    huge = "Checkout " + "x" * 50_000
    reply = bot.command(f"declare p1 {huge}")

    assert reply.status == 200
    assert "limited to 4,000" in reply.text
    assert bot.bot.store.count_incidents() == 0
    assert "x" * 200 not in posted_params(bot)


def test_a_long_title_is_refused_with_the_title_limit(bot):
    reply = bot.command("declare p1 " + "y" * 400)

    assert "Titles are limited to 150 characters; yours has 400" in reply.text
    assert bot.bot.store.count_incidents() == 0


def test_unicode_arrives_intact_and_mentions_in_user_text_are_escaped(bot):
    title = "Paiement échoue 💳 <!channel> <@U0CEO> & co"
    bot.command(f"declare p2 {title}")
    message = announcement(bot)

    sent = posted_params(bot)
    assert "Paiement échoue 💳" in sent
    assert "&lt;!channel&gt; &lt;@U0CEO&gt; &amp; co" in sent
    assert "<!channel>" not in sent and "<@U0CEO>" not in sent
    assert "Paiement échoue 💳" in message.all_text
    assert bot.bot.store.get(1).title == title


def test_twenty_concurrent_declares_get_twenty_distinct_numbers():
    # About the numbering: 20 announcements and 20 pages to one person in 15 s are past Slack's
    # per-channel limit (1/s), so this Slack answers the burst (test_rate_limits.py has them on).
    with SandboxedBot(rate_limits=False) as bot:
        with ThreadPoolExecutor(max_workers=20) as pool:
            replies = list(pool.map(lambda i: bot.command(f"declare p3 Outage {i}"), range(20)))

        assert all(r.status == 200 for r in replies)
        numbers = sorted(int(r.text.split()[0].removeprefix("INC-")) for r in replies)
        assert numbers == list(range(1, 21))
        bot.slack.wait_for(lambda: len(bot.slack.calls_to("chat.postMessage")) >= 40, timeout=15)
        assert not bot.slack.refusals()


def test_declare_without_a_title_opens_a_form_that_declares(bot):
    reply = bot.command("declare p2")
    assert reply.status == 200 and reply.text == ""
    view = bot.slack.wait_for_view("declare_modal")

    empty = bot.platform.submit_view(view, {"severity_input": "P2", "title_input": "  "}, user="U0BOB")
    assert empty.response_action == "errors"
    assert bot.bot.store.count_incidents() == 0

    done = bot.platform.submit_view(view, {"severity_input": "P2", "title_input": "Payments slow"}, user="U0BOB")
    assert done.status == 200 and done.response_action is None
    message = announcement(bot)
    assert "Payments slow" in message.all_text and "P2" in message.all_text
    assert bot.bot.store.get(1).commander == "U0BOB"


def test_list_shows_severity_age_commander_and_last_update(bot):
    bot.command("declare p1 Checkout down", user="U0ALICE")
    bot.command("declare p3 Slow admin page", user="U0BOB")

    reply = bot.command("list")
    text = json.dumps(reply.blocks)
    assert "2 open incidents" in text
    assert "*INC-1* P1" in text and "*INC-2* P3" in text
    assert "<@U0ALICE>" in text and "<@U0BOB>" in text
    assert "no update yet" in text and "not acknowledged" in text


def test_update_reaches_war_room_thread_and_announcement(bot):
    bot.command("declare p1 Checkout down")
    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-checkout-down"))
    bot.slack.wait_for_message(room.id, "first steps")

    reply = bot.command("update identified Bad deploy of <rev-42> & friends", channel=room.id)

    assert reply.text == "Update posted to INC-1."
    bot.slack.wait_for_message(room.id, "Bad deploy of &lt;rev-42&gt; &amp; friends")
    bot.slack.wait_for(lambda: "Identified" in announcement(bot).all_text)
    assert bot.bot.store.get(1).status == "identified"


def test_resolve_edits_the_announcement_in_place(bot):
    bot.command("declare p1 Checkout down")
    first = announcement(bot)

    reply = bot.command("resolve INC-1 Rolled back to rev 41")

    assert reply.text == "INC-1 resolved."
    edited = bot.slack.wait_for(
        lambda: next(
            (m for m in bot.slack.messages_in(ANNOUNCE) if m.ts == first.ts and "resolved" in m.all_text),
            None,
        )
    )
    assert edited.edited
    assert not edited.has_button("incident_ack")
    assert "Rolled back to rev 41" in edited.all_text
    assert bot.command("list").text == "No open incidents."
    assert bot.command("resolve INC-1").text == "INC-1 is already resolved."


def test_oncall_shows_who_holds_each_role_and_each_open_incident(bot):
    bot.command("declare p3 Export button broken", user="U0ALICE")

    reply = bot.command("oncall", user="U0BOB")

    assert reply.text == ""  # emails are looked up after the ack
    assert reply.wait_response().text.split("\n") == [
        "*oncall_primary*: <@U0PRIMARY>",
        "*oncall_secondary*: <@U0SECOND>",
        "*vp_product*: <@U0VP>",
        "*ceo*: <@U0CEO>",
        "*tech_lead*: <@U0LEAD>",
        "*support*: <@U0SUPPORT>",
        "*INC-1*: commander <@U0ALICE>",
    ]


def test_help_lists_every_subcommand(bot):
    import commands

    reply = bot.command("help")
    for sub in commands.REGISTRY.values():
        assert sub.usage in reply.text


def test_healthz_reports_store_and_scheduler(bot):
    with urllib.request.urlopen(f"{bot.base_url}/healthz", timeout=5) as response:
        health = json.loads(response.read())
    assert response.status == 200
    lease = {k: health.pop(k) for k in ("instance", "lease_holder", "lease_age_s", "lease_renewed_s_ago")}
    assert health == {
        "status": "ok",
        "open_incidents": 0,
        "scheduler_running": True,
        "db_ok": True,
        "delivery_backlog": 0,
        "oldest_pending_s": None,
        "store": "sqlite",
        "leader": True,  # on SQLite the process always leads
        "fencing_token": 1,
    }
    assert lease["lease_holder"] == lease["instance"] and 0 <= lease["lease_age_s"] < 60


def test_slack_errors_during_set_up_are_retried(bot):
    bot.slack.fail("conversations.create", status=503, times=1)
    bot.slack.rate_limit("chat.postMessage", times=1, retry_after=1)

    bot.command("declare p1 Checkout down")

    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-checkout-down"))
    bot.slack.wait_for_message(room.id, "first steps")
    announcement(bot)


@pytest.mark.parametrize(
    "body",
    [
        "payload=not-json",
        "payload=%7B%22type%22%3A%22view_submission%22%2C%22view%22%3A%7B%22callback_id%22%3A%22declare_modal%22%7D%7D",
        "",
    ],
    ids=["payload-not-json", "view-without-type", "empty"],
)
def test_a_signed_but_malformed_request_is_refused_without_a_500(bot, body):
    reply = bot.platform.send(body)

    assert reply.status in (400, 404)
    assert "Traceback" not in str(reply.body)
    assert bot.bot.store.count_incidents() == 0


def test_a_button_naming_no_incident_answers_politely(bot):
    click = bot.platform.click(action_id="incident_ack", value="999", user="U0BOB")

    assert click.status == 200
    click.wait_response(lambda r: "That incident no longer exists." in r.text)


def test_an_announcement_slack_answers_too_late_is_taken_up_when_its_set_up_claim_lapses_and_posted_once() -> None:
    """Slack carries the announcement out 1.5 s after the call, past the 1 s client timeout: the
    declarer is told it will be retried, and it is within seconds, once its set-up claim lapses
    (3 timeouts), not at the next minute's round; the announcement that landed is found by its key."""
    with SandboxedBot(config_text=FAST_CONFIG, slack_timeout_s=1) as running:
        running.slack.delay("chat.postMessage", 1.5)
        reply = running.command("declare p1 Checkout returns 500", user="U0ALICE")
        said = reply.wait_response(lambda r: "INC-1 is recorded" in r.text, timeout=15)
        assert "did not answer in time" in said.text
        running.slack.clear_faults()
        running.slack.wait_for(lambda: running.bot.store.get(1).war_room_briefed, timeout=30, what="the set-up")
        announcements = [m for m in running.slack.top_level("C0INCIDENT") if "INC-1 ·" in m.all_text]
        assert len(announcements) == 1, f"announced {len(announcements)} times"
        assert not [r for r in reply.responses() if "went wrong" in r.text]
