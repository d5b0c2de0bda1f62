"""On-call schedules, overrides and Slack user groups end to end: signed requests to the running bot."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bot.domain import schedules
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

ALICE, BOB, PRIMARY, SECOND, LEAD, SUPPORT = "U0ALICE", "U0BOB", "U0PRIMARY", "U0SECOND", "U0LEAD", "U0SUPPORT"


def schedule_config(
    rotation: str = "daily", members: str = "U0ALICE, U0BOB, U0PRIMARY", start: str | None = None
) -> str:
    """A rotation whose current (daily) shift is the second member's, and began six hours ago.

    The handoff is placed relative to now, not at a fixed hour: a test that takes a 2 h override,
    or starts the bot, is then never within hours of a handoff, whatever the time of day it runs.
    """
    began = datetime.now(UTC) - timedelta(hours=6)
    start = start or (began - timedelta(days=1)).date().isoformat()
    schedule = (
        "schedules:\n"
        f'  primary: {{timezone: UTC, rotation: {rotation}, handoff: "{began:%H:%M}", start: {start},'
        f" members: [{members}]}}\n"
        "people:\n"
    )
    return FAST_CONFIG.replace("people:\n", schedule, 1).replace(
        "oncall_primary: [U0PRIMARY]", "oncall_primary: [schedule:primary]"
    )


def pages_to(bot: SandboxedBot, user: str) -> list:
    return [m for m in bot.slack.dms_to(user) if not m.is_reply and "You are paged" in m.all_text]


def test_a_declare_pages_the_member_on_call_today():
    # Yesterday's shift was the first member's; today's (it began six hours ago) the second one's.
    with SandboxedBot(config_text=schedule_config()) as running:
        running.command("declare p2 Search is slow", user=LEAD)

        running.slack.wait_for_dm(BOB, "You are paged", with_button="incident_ack")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
        running.slack.wait_for_message(room, "Paged <@U0BOB> (oncall_primary")
        assert not pages_to(running, ALICE) and not pages_to(running, PRIMARY)
        assert not running.slack.refusals()


def test_an_override_pages_its_holder_and_is_announced_audited_and_shown():
    with SandboxedBot(config_text=schedule_config()) as running:
        # Neither a member of the rotation nor on call: refused by the permission layer, and audited.
        refused = running.command("oncall override primary <@U0ALICE|alice> 2h", user=LEAD)
        assert refused.text.startswith("Only the members of the primary rotation"), refused.text
        assert "incident" not in refused.text.split(" may ")[0]  # about no incident: no incident roles named
        assert running.bot.store.overrides("primary") == []
        assert running.bot.store.refusals(None)[-1].detail["action"] == "oncall_override"

        done = running.command("oncall override primary <@U0ALICE|alice> 2h", user=BOB)
        done.wait_response(lambda r: "<@U0ALICE> is on call for *primary* until" in r.text)
        running.slack.wait_for_message("C0INCIDENT", "<@U0ALICE> is on call for *primary*")
        # The same request again (a double submit) changes nothing.
        again = running.command("oncall override primary <@U0ALICE|alice> 2h", user=BOB)
        again.wait_response(lambda r: "already on call" in r.text)
        assert len(running.bot.store.overrides("primary")) == 1
        audit = [a for a in running.bot.store.audit_log(None) if a.action == "oncall_override"]
        assert len(audit) == 1 and audit[0].actor == BOB and audit[0].detail["user"] == ALICE

        shown = running.command("oncall", user=LEAD)
        text = shown.wait_response(lambda r: "*primary*" in r.text).text
        assert "<@U0ALICE> until" in text and "(override)" in text and "then <@U0BOB>" in text
        assert "override: <@U0ALICE>" in text and "set by <@U0BOB>" in text
        assert "*oncall_primary*: <@U0ALICE>" in text

        running.command("declare p2 Search is slow", user=LEAD)
        running.slack.wait_for_dm(ALICE, "You are paged", with_button="incident_ack")
        time.sleep(0.3)
        assert not pages_to(running, BOB)

        cleared = running.command("oncall override clear primary", user=ALICE)
        cleared.wait_response(lambda r: "<@U0BOB> is on call" in r.text)
        running.slack.wait_for_message("C0INCIDENT", "ended the override of *primary*")
        twice = running.command("oncall override clear primary", user=ALICE)
        twice.wait_response(lambda r: "No override of *primary* is in force" in r.text)
        assert not running.slack.refusals()


def test_bad_override_commands_get_usage_and_change_nothing():
    with SandboxedBot(config_text=schedule_config()) as running:
        for text, expected in (
            ("oncall override nightly <@U0ALICE> 2h", "There is no schedule `nightly`"),
            ("oncall override primary alice 2h", "@-mention"),
            ("oncall override primary <@U0ALICE> soonish", "is not a length"),
            ("oncall override primary <@U0ALICE> 30d", "at most 14 days"),
            ("oncall override primary", "Name a schedule, a person and how long"),
            ("oncall sideways", "is not something `oncall` does"),
        ):
            result = running.command(text, user=BOB)
            assert result.status == 200
            assert expected in result.text and "Usage:" in result.text, (text, result.text)
        assert running.bot.store.overrides() == []


def test_a_role_that_is_a_user_group_pages_the_groups_members(caplog):
    config = FAST_CONFIG.replace("support: [U0SUPPORT]", 'support: ["@support-team", "@ghost-team"]')
    running = SandboxedBot(config_text=config)
    group = running.slack.add_usergroup("support-team", [ALICE, BOB])
    with running:
        warning = "config: people.support: no Slack user group has the handle @ghost-team"
        running.slack.wait_for(lambda: warning in caplog.text, what="the start-up warning")
        running.command("declare p3 Export button broken", user=LEAD)

        running.slack.wait_for_dm(ALICE, "You are paged", with_button="incident_ack")
        running.slack.wait_for_dm(BOB, "You are paged", with_button="incident_ack")
        note = running.slack.wait_for_message("C0INCIDENT", "Paged <@U0ALICE>, <@U0BOB> (support")
        assert "Could not reach: no Slack user group has the handle @ghost-team" in note.all_text
        # Cached for a few minutes: the start-up check, the page and the note share one lookup.
        assert len(running.slack.calls_to("usergroups.list")) == 1
        assert len(running.slack.calls_to("usergroups.users.list")) == 1

        # `/incident page @support-team`: the sandbox, like Slack, sends <!subteam^ID|@support-team>.
        running.slack.set_usergroup_users(group.id, [SECOND])
        running.bot.directory.usergroup_ttl_s = 0  # the cache's few minutes, skipped for the test
        result = running.command("page INC-1 @support-team", user=LEAD)
        assert f"<!subteam^{group.id}|@support-team>" in result.payload["text"]
        assert "Paging the user group @support-team for INC-1" in result.text
        running.slack.wait_for_dm(SECOND, "You are paged", with_button="incident_ack")
        assert not running.slack.refusals()


def test_a_step_due_after_a_handoff_pages_the_incoming_member():
    config = schedule_config(rotation="4s", members="U0ALICE, U0BOB").replace(
        "      - {after: 0s, page: [oncall_primary]}\n      - {after: 2s, page: [oncall_secondary]}\n      - {after: 30s",
        "      - {after: 0s, page: [oncall_secondary]}\n      - {after: 2s, page: [oncall_primary]}\n      - {after: 30s",
    )
    with SandboxedBot(config_text=config) as running:
        schedule = running.bot.config.schedules["primary"]
        # Declare about a second before a handoff, so the 2 s step comes due after it.
        while True:
            now = datetime.now(UTC)
            shift = schedules.shift_at(schedule, now)
            assert shift is not None
            if timedelta(seconds=1.0) <= shift.ends_at - now <= timedelta(seconds=1.8):
                break
            time.sleep(0.05)
        outgoing = shift.member
        incoming = schedules.shift_at(schedule, shift.ends_at).member  # type: ignore[union-attr]
        running.command("declare p2 Search is slow", user=LEAD)
        assert running.bot.store.get(1).declared_at < shift.ends_at

        running.slack.wait_for_dm(SECOND, "You are paged")
        page = running.slack.wait_for_dm(incoming, "You are paged")
        assert float(page.ts) >= shift.ends_at.timestamp()
        assert not pages_to(running, outgoing)
