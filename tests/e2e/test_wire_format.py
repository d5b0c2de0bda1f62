"""Slack's real inbound wire format, end to end: what a person types, as Slack sends it, everywhere it lands.

The sandbox's simulated user sends slash text as Slack does (`&amp;`, `&lt;`, `&gt;`, and
`<@U…|name>` for a mention), so these tests exercise the decoding the bot does at its door.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bot.sandbox.runner import SandboxedBot
from bot.sandbox.statuspage import StatuspageSandbox
from tests.conftest import FAST_CONFIG

ANNOUNCE = "C0INCIDENT"
STATUSPAGE_KEY = "sp-key-wire-format"


@pytest.fixture
def public_bot(monkeypatch) -> Iterator[tuple[SandboxedBot, StatuspageSandbox]]:
    """The bot with a status page for P1 and P2, and U0CEO known in Slack as `carl`."""
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        monkeypatch.setenv("TEST_STATUSPAGE_KEY", STATUSPAGE_KEY)
        config = FAST_CONFIG + (
            f"statuspage: {{page_id: pg1, api_key_env: TEST_STATUSPAGE_KEY, api_url: '{page.api_url}'}}\n"
        )
        with SandboxedBot(config_text=config) as running:
            running.slack.add_user("U0CEO", "carl", "Carl Exec", "ceo@example.com")
            yield running, page
            assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"


def sent_to_slack(bot: SandboxedBot) -> str:
    return json.dumps([c.params for c in bot.slack.calls], ensure_ascii=False)


def announcement(bot: SandboxedBot, number: int = 1):
    return bot.slack.wait_for_message(ANNOUNCE, f"INC-{number} ·", with_button="incident_resolve")


def test_the_issue_example_is_escaped_once_mentions_live_and_plain_on_the_status_page(public_bot):
    bot, page = public_bot

    # --public: the title goes on the status page only when asked (an on-call person may ask).
    reply = bot.command("declare p2 --public R&D build <broken> for @carl", user="U0PRIMARY")

    assert reply.payload["text"] == "declare p2 --public R&amp;D build &lt;broken&gt; for <@U0CEO|carl>"  # as sent
    assert reply.text.startswith("INC-1 declared (P2 · High)")
    title_block = announcement(bot).blocks[1]["text"]["text"]
    assert title_block == "*R&amp;D build &lt;broken&gt; for <@U0CEO>*"
    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-r-d-build-broken-for-carl"))
    topic = bot.slack.wait_for(lambda: bot.slack.channel_by_name(room.name).topic)
    assert topic == "INC-1 P2 High: R&D build ‹broken› for @carl"
    created = bot.slack.wait_for(lambda: page.calls_to("create_incident"))
    assert created[0].body["incident"]["name"] == "R&D build <broken> for @carl"
    assert created[0].body["incident"]["body"] == "We are investigating: R&D build <broken> for @carl"
    page_dm = bot.slack.wait_for_dm("U0PRIMARY", "You are paged")
    assert "*R&amp;D build &lt;broken&gt; for <@U0CEO>*" in json.dumps(page_dm.blocks)
    sent = sent_to_slack(bot)
    assert "&amp;amp;" not in sent and "&amp;lt;" not in sent and "U0CEO|carl" not in sent
    assert "u0ceo" not in room.name

    bot.command("update INC-1 --public identified Fixed R&D's <build> with @carl", user="U0PRIMARY", channel=room.id)
    posted = bot.slack.wait_for_message(room.id, "INC-1 update")
    assert "Fixed R&amp;D's &lt;build&gt; with <@U0CEO>" in posted.text
    updated = bot.slack.wait_for(lambda: page.calls_to("update_incident"))
    assert updated[0].body["incident"]["body"] == "Fixed R&D's <build> with @carl"


def test_a_76_character_title_full_of_escapes_is_accepted(bot):
    title = "R&D <build> & <deploy> broken " + "&<>" * 15 + "x"
    assert len(title) == 76

    reply = bot.command(f"declare p3 {title}")

    assert len(reply.payload["text"]) > 151 + len("declare p3 ")
    assert reply.text.startswith("INC-1 declared")
    assert bot.bot.store.get(1).title == title
    announcement(bot)


def test_a_title_from_the_command_and_from_the_form_is_stored_identically(bot):
    title = "R&D build <broken> & \"quoted\" 'too'"
    bot.command(f"declare p3 {title}", user="U0ALICE")
    announcement(bot, 1)

    bot.command("declare p3", user="U0BOB")
    view = bot.slack.wait_for_view("declare_modal")
    done = bot.platform.submit_view(view, {"severity_input": "P3", "title_input": title}, user="U0BOB")
    assert done.status == 200 and done.response_action is None
    second = announcement(bot, 2)

    assert bot.bot.store.get(1).title == bot.bot.store.get(2).title == title
    first = announcement(bot, 1)
    assert first.blocks[1]["text"] == second.blocks[1]["text"]


def test_broadcasts_in_a_title_or_an_update_are_live_nowhere(bot):
    # Typed literally, and typed as Slack recognises them (@here is sent as <!here>).
    bot.command("declare p2 <!channel> @here <!everyone> @channel <@U0CEO> down", user="U0ALICE")
    room = bot.slack.wait_for(lambda: bot.slack.channel_by_name("inc-1-channel-here-everyone-channel-u0ceo-down"))
    bot.slack.wait_for_message(room.id, "first steps")
    bot.command("update INC-1 still <!here> and @everyone", user="U0ALICE")
    bot.slack.wait_for_message(room.id, "INC-1 update")
    bot.command("resolve INC-1 fixed for @channel <!channel>", user="U0ALICE")
    bot.slack.wait_for_message(room.id, "resolved INC-1")

    sent = sent_to_slack(bot)
    for live in ("<!channel", "<!here", "<!everyone", "<@U0CEO"):
        assert live not in sent
    assert "&lt;!channel&gt; @here &lt;!everyone&gt; @channel &lt;@U0CEO&gt; down" in sent
    assert bot.bot.store.get(1).title.startswith("<!channel> ")


def test_mentions_in_arguments_name_people(fast_bot):
    fast_bot.command("declare p3 Export button broken")
    fast_bot.slack.wait_for_dm("U0SUPPORT", "You are paged")

    assert fast_bot.command("page @bob").text == "Paging <@U0BOB> for INC-1."
    assert fast_bot.command("role scribe @alice").text == "<@U0ALICE> is now scribe of INC-1."
    unknown = fast_bot.command("page @nobody")  # not a member: Slack leaves it as text
    assert "`@nobody` is neither a person" in unknown.text
