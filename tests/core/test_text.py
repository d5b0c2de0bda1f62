"""User text: decoded once where it enters (slash text, forms), rendered for each destination."""

from __future__ import annotations

import pytest

from bot.core import text
from bot.core.errors import UsageError
from bot.core.mrkdwn import escape, user_text
from bot.core.text import ENTITY_CLOSE, ENTITY_OPEN, decode_slash, for_slack, from_form, length, plain
from bot.domain import incidents

# What Slack sends for `/incident declare p2 R&D build <broken> for @carl` (should_escape: true).
WIRE = "R&amp;D build &lt;broken&gt; for <@U0CEO|carl>"


def test_slash_text_is_decoded_once_and_mentions_stay_distinct_from_typed_brackets():
    title = decode_slash(WIRE)

    assert plain(title) == "R&D build <broken> for @carl"
    assert for_slack(title) == "R&amp;D build &lt;broken&gt; for <@U0CEO>"
    # Typed `&amp;` is text: it arrives as `&amp;amp;` and is decoded exactly once.
    assert plain(decode_slash("AT&amp;amp;T")) == "AT&amp;T"
    assert for_slack(decode_slash("AT&amp;amp;T")) == "AT&amp;amp;T"


def test_typed_angle_brackets_never_become_a_live_mention():
    typed = decode_slash("&lt;@U0CEO&gt; &lt;!channel&gt; &lt;https://evil.example|bank&gt;")

    assert plain(typed) == "<@U0CEO> <!channel> <https://evil.example|bank>"
    assert for_slack(typed) == "&lt;@U0CEO&gt; &lt;!channel&gt; &lt;https://evil.example|bank&gt;"
    assert "<" not in for_slack(typed)


@pytest.mark.parametrize("special", ["<!channel>", "<!here>", "<!everyone>", "<!here|here>", "<!channel|@channel>"])
def test_broadcasts_slack_recognised_are_never_live(special):
    name = special[2:].split("|")[0].split(">")[0]
    rendered = for_slack(decode_slash(f"ping {special} now"))

    assert rendered == f"ping @{name} now"
    assert plain(decode_slash(special)) == f"@{name}"


def test_channels_links_and_user_groups_stay_live_in_slack_and_read_plainly_elsewhere():
    wire = (
        "see <#C0GENERAL|general>, <https://status.example/a?x=1&amp;y=2|the dashboard>, "
        "<https://x.io/b>, <mailto:vp@example.com|vp@example.com> and <!subteam^S0SRE|@sre>"
    )
    canonical = decode_slash(wire)

    assert for_slack(canonical) == (
        "see <#C0GENERAL>, <https://status.example/a?x=1&amp;y=2|the dashboard>, "
        "<https://x.io/b>, <mailto:vp@example.com|vp@example.com> and <!subteam^S0SRE>"
    )
    assert plain(canonical) == "see #general, the dashboard, https://x.io/b, vp@example.com and @sre"


def test_nobody_can_type_the_markers_that_delimit_an_entity():
    forged = f"{ENTITY_OPEN}!channel{ENTITY_CLOSE} {ENTITY_OPEN}@U0CEO{ENTITY_CLOSE}"

    for canonical in (from_form(forged), decode_slash(forged)):
        assert ENTITY_OPEN not in canonical and ENTITY_CLOSE not in canonical
        assert for_slack(canonical) == "!channel @U0CEO"
    # Stray markers in text from elsewhere are dropped, never rendered as an entity.
    assert for_slack(f"a {ENTITY_OPEN}@U0CEO b") == "a @U0CEO b"


def test_a_form_value_is_stored_as_typed_like_the_same_slash_text():
    assert from_form("R&D build <broken>") == decode_slash("R&amp;D build &lt;broken&gt;")


def test_length_counts_what_the_person_typed():
    title = decode_slash(WIRE)

    assert length(title) == len("R&D build <broken> for @carl")
    seventy_six = "R&D <build> & <deploy> broken " + "&<>" * 15 + "x"
    assert len(seventy_six) == 76
    wire = seventy_six.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert len(wire) >= 151
    assert incidents.validate_title(decode_slash(wire), "usage") == seventy_six


def test_the_title_limit_counts_a_mention_as_its_name():
    wire = "x" * 140 + " <@U0CEO|carl>"  # 146 as typed; far longer as stored and rendered
    assert incidents.validate_title(decode_slash(wire), "usage")
    with pytest.raises(UsageError, match="yours has 156"):
        incidents.validate_title(decode_slash("x" * 150 + " <@U0CEO|carl>"), "usage")


def test_truncation_never_splits_an_escape_or_an_entity():
    canonical = decode_slash("&amp;&amp;&amp; <@U0CEO|carl> " + "y" * 50)

    for limit in range(14, 60):
        cut = for_slack(canonical, limit)
        assert len(cut) <= limit
        body = cut.removesuffix(text.TRUNCATION_MARK)
        assert body.count("&") == body.count(";")
        assert body.count("<") == body.count(">")


def test_war_room_names_come_from_the_title_as_people_read_it():
    name = incidents.war_room_name("inc", 1, decode_slash(WIRE))
    assert name == "inc-1-r-d-build-broken-for-carl"


def test_mentioned_user_accepts_what_names_a_person():
    assert text.mentioned_user(decode_slash("<@U0BOB|bob>")) == "U0BOB"
    assert text.mentioned_user("U0BOB") == "U0BOB"
    assert text.mentioned_user("<@U0BOB>") == "U0BOB"  # typed by hand: it names, it does not ping
    assert text.mentioned_user(decode_slash("<#C0GENERAL|general>")) is None
    assert text.mentioned_user(decode_slash("<@U0BOB|bob> <@U0ALICE|alice>")) is None
    assert text.mentioned_user("bob") is None


def test_the_older_helpers_keep_their_meaning():
    canonical = decode_slash(WIRE)

    assert escape("a <b> & c") == "a &lt;b&gt; &amp; c"
    assert escape(canonical) == "R&amp;D build &lt;broken&gt; for @carl"  # nothing live
    assert user_text(canonical, 100) == "R&amp;D build &lt;broken&gt; for <@U0CEO>"
    assert incidents.clean_inline(decode_slash("&lt;!channel&gt; `x`")) == "&lt;!channel&gt; 'x'"
