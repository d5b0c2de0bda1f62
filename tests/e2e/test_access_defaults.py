"""The defaults a real workspace would abuse (issue 21), end to end over signed HTTP requests:
an outsider cannot stop a P1's escalation, one person cannot page someone fifty times, and an
on-call shift goes only to a member of the rotation.
"""

from __future__ import annotations

import time

from bot.sandbox.runner import SandboxedBot
from bot.slack import ids
from tests.conftest import FAST_CONFIG
from tests.e2e.test_oncall import schedule_config

OUTSIDER = "U0BOB"  # no role under `people`, on no escalation path, never paged


def pages_to(bot: SandboxedBot, user: str) -> list:
    return [m for m in bot.slack.dms_to(user) if not m.is_reply and "You are paged" in m.all_text]


def test_an_outsiders_acknowledge_is_refused_and_escalation_continues():
    with SandboxedBot(config_text=FAST_CONFIG) as running:
        running.command("declare p1 Checkout down", user="U0ALICE")
        channel = running.slack.wait_for(lambda: running.bot.store.get(1).announcement_channel)
        announcement = running.slack.wait_for_message(channel, "INC-1", with_button=ids.ACK)

        click = running.click(announcement.button(ids.ACK), user=OUTSIDER, channel=channel)
        typed = running.command("ack INC-1", user=OUTSIDER)

        refusal = click.wait_response().text
        assert refusal.startswith("Only ") and "escalation path" in refusal, refusal
        assert typed.text.startswith("Only ") and "INC-1" in typed.text, typed.text
        assert running.bot.store.get(1).acknowledged_at is None
        assert [r.detail["action"] for r in running.bot.store.refusals(1) if r.actor == OUTSIDER] == ["ack", "ack"]
        # The secondary (2 s) and the VP (4 s) are still paged: the refusal stopped nothing.
        running.slack.wait_for_dm("U0SECOND", "You are paged")
        running.slack.wait_for_dm("U0VP", "You are paged")
        # The CEO is on the P1 path (step 4) before being paged, and may stop it.
        assert "You acknowledged INC-1" in running.command("ack INC-1", user="U0CEO").text
        assert running.bot.store.get(1).acknowledged_by == "U0CEO"
        assert not running.slack.refusals(), running.slack.refusals()


def test_the_sixth_manual_page_in_a_minute_changes_nothing():
    with SandboxedBot(config_text=FAST_CONFIG) as running:
        running.command("declare p3 Export button broken", user="U0ALICE")
        running.slack.wait_for_dm("U0SUPPORT", "You are paged")

        replies = [running.command("page INC-1 <@U0CEO|ceo>", user=OUTSIDER).text for _ in range(6)]

        assert replies[0] == "Paging <@U0CEO> for INC-1."
        for repeat in replies[1:]:
            assert repeat.startswith("<@U0CEO> was paged for INC-1 ") and "nothing was sent" in repeat, repeat
            assert "again in 4m" in repeat or "again in 5m" in repeat, repeat
        running.slack.wait_for_dm("U0CEO", "You are paged")
        running.slack.wait_for(lambda: running.bot.store.delivery_backlog()[0] == 0, what="the page sent")
        assert len(pages_to(running, "U0CEO")) == 1
        manual = [k for k in running.bot.store.fired_keys(1) if k.startswith("manual:")]
        assert len(manual) == 1
        # Another person is a page of their own; a role is not limited by this rule.
        assert running.command("page INC-1 <@U0LEAD|lead>", user=OUTSIDER).text == "Paging <@U0LEAD> for INC-1."
        assert running.command("page INC-1 oncall_secondary", user="U0ALICE").text.startswith("Paging the")
        assert not running.slack.refusals(), running.slack.refusals()


def test_the_repeat_window_is_configurable():
    config = FAST_CONFIG + "paging: {manual_repeat_after: 1s}\n"
    with SandboxedBot(config_text=config) as running:
        running.command("declare p3 Export button broken", user="U0ALICE")
        first = time.monotonic()
        assert running.command("page INC-1 <@U0CEO|ceo>", user=OUTSIDER).text.startswith("Paging")
        assert "nothing was sent" in running.command("page INC-1 <@U0CEO|ceo>", user=OUTSIDER).text
        running.slack.wait_for(lambda: time.monotonic() - first > 1.1, what="the 1 s window to pass")
        assert running.command("page INC-1 <@U0CEO|ceo>", user=OUTSIDER).text.startswith("Paging")
        running.slack.wait_for(lambda: len(pages_to(running, "U0CEO")) == 2, what="two pages")


def test_an_override_to_a_non_member_is_refused_unless_the_schedule_allows_it():
    # The rotation is ALICE, BOB, PRIMARY; BOB is on call today and so may override.
    with SandboxedBot(config_text=schedule_config()) as running:
        refused = running.command("oncall override primary <@U0CEO|ceo> 2h", user="U0BOB")
        reply = refused.wait_response(lambda r: "not a member" in r.text).text
        assert "<@U0CEO> is not a member of the *primary* rotation" in reply and "Nothing was changed" in reply
        assert running.bot.store.overrides("primary") == []
        assert not any("is on call for *primary*" in m.all_text for m in running.slack.messages_in("C0INCIDENT"))
        done = running.command("oncall override primary <@U0ALICE|alice> 2h", user="U0BOB")
        done.wait_response(lambda r: "<@U0ALICE> is on call for *primary* until" in r.text)

    members = "members: [U0ALICE, U0BOB, U0PRIMARY]"
    open_config = schedule_config().replace(members, members + ", allow_outside_overrides: true")
    assert "allow_outside_overrides: true" in open_config
    with SandboxedBot(config_text=open_config) as running:
        done = running.command("oncall override primary <@U0CEO|ceo> 2h", user="U0BOB")
        done.wait_response(lambda r: "<@U0CEO> is on call for *primary* until" in r.text)
        assert [o.user for o in running.bot.store.overrides("primary")] == ["U0CEO"]
