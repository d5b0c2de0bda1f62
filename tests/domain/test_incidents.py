"""The pure incident lifecycle and the text helpers around it: no I/O, `now` passed in."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot import config
from bot.core import mrkdwn
from bot.core.durations import humanize, parse_duration
from bot.core.errors import UsageError
from bot.domain import incidents
from bot.domain.incidents import Change, Incident
from bot.slack import grammar
from bot.slack.grammar import ParsedCommand

T0 = datetime(2026, 1, 25, 14, 32, tzinfo=UTC)
USAGE = "/incident declare <p1-p4> <title>"
CHOICES = "p1 (critical), p2 (high), p3 (medium) or p4 (low)"
CHANNEL_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


def declared(severity: str = "P1", title: str = "Checkout returns 500") -> Incident:
    draft = incidents.declare(title=title, severity=severity, by="U0DECLARER", now=T0, channel="C0ANNOUNCE")
    return replace(draft, number=7)


def resolved() -> Incident:
    change = incidents.resolve(declared(), by="U0X", now=T0 + timedelta(minutes=30), summary=None)
    assert change is not None
    return change.incident


# -- parse_severity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("p1", "P1"), ("P1", "P1"), ("1", "P1"), (" p2 ", "P2"), ("P3", "P3"), ("4", "P4")],
)
def test_parse_severity_accepts(text: str, expected: str) -> None:
    assert incidents.parse_severity(text, USAGE) == expected


@pytest.mark.parametrize("text", ["p9", "critical", "P0", "5", "p 1", "pp1", "P1!"])
def test_parse_severity_refuses_naming_the_choices(text: str) -> None:
    with pytest.raises(UsageError) as info:
        incidents.parse_severity(text, USAGE)
    assert info.value.message == f"`{text}` is not a severity. Use {CHOICES}."
    assert info.value.usage == USAGE


@pytest.mark.parametrize("text", ["", None])
def test_parse_severity_asks_when_missing(text: str | None) -> None:
    with pytest.raises(UsageError) as info:
        incidents.parse_severity(text, USAGE)
    assert info.value.message == f"Which severity? Use {CHOICES}."


def test_parse_severity_quotes_long_garbage_short_and_safely() -> None:
    with pytest.raises(UsageError) as info:
        incidents.parse_severity("`" * 5 + "x" * 5000, USAGE)
    assert info.value.message == f"`'''''xxxxxxxxxxxxxxx…` is not a severity. Use {CHOICES}."


# -- validate_title -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n \r", "\x00\x07"])
def test_empty_title_is_refused(text: str) -> None:
    with pytest.raises(UsageError) as info:
        incidents.validate_title(text, USAGE)
    assert info.value.message == "The incident needs a title."


def test_control_characters_and_newlines_are_folded() -> None:
    assert incidents.validate_title("DB\x00down\x07now", USAGE) == "DB down now"
    assert incidents.validate_title("line one\nline two\r\n\tthree", USAGE) == ("line one line two three")
    assert incidents.validate_title("   padded   ", USAGE) == "padded"


def test_unicode_title_is_kept() -> None:
    assert incidents.validate_title("Caf\u00e9 \u65e5\u672c 🔥", USAGE) == "Caf\u00e9 \u65e5\u672c 🔥"


def test_title_at_the_limit_is_accepted() -> None:
    title = "x" * 150
    assert incidents.validate_title(title, USAGE) == title


def test_title_over_the_limit_names_the_limit() -> None:
    with pytest.raises(UsageError) as info:
        incidents.validate_title("x" * 151, USAGE)
    assert info.value.message.startswith("Titles are limited to 150 characters; yours has 151.")
    assert "/incident update" in info.value.message
    assert info.value.usage == USAGE


def test_fifty_kilobytes_of_title_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        incidents.validate_title("A" * 50 * 1024, USAGE)
    assert "yours has 51,200" in info.value.message
    assert len(info.value.message) < 300  # the reply never echoes the text back


def test_zero_width_joiner_emoji_survive() -> None:
    technologist = "\U0001f469\u200d\U0001f4bb"  # woman technologist: one emoji
    assert incidents.validate_title(f"{technologist} laptop fleet down", USAGE) == (f"{technologist} laptop fleet down")


# -- war_room_name ----------------------------------------------------------------------------


ODD_TITLES = [
    "Checkout returns 500",
    "Ünïcödé café crème brûlée",
    "日本語のタイトル",
    "🔥🔥🔥 everything is on fire 🔥",
    "🔥",
    "!!!???...",
    "---leading and trailing---",
    "-",
    "x" * 500,
    "a-" * 300,
    "UPPER_case_With_Underscores",
    "<!channel> <@U123> &amp;",
    "tabs\tand\nnewlines",
    "   ",
    "Ω≈ç√∫˜µ≤≥÷",
    "\u202eright-to-left override",
    "中" * 200 + " tail",
]


@pytest.mark.parametrize("title", ODD_TITLES)
@pytest.mark.parametrize("number", [1, 7, 123456789])
def test_war_room_name_is_always_a_valid_channel_name(title: str, number: int) -> None:
    name = incidents.war_room_name("inc", number, title)
    assert CHANNEL_NAME.match(name), name
    assert re.match(rf"^inc-{number}(-|$)", name), name
    assert not name.endswith("-")
    assert "--" not in name


def test_war_room_name_slugs_the_title() -> None:
    assert incidents.war_room_name("inc", 7, "Checkout returns 500!") == ("inc-7-checkout-returns-500")
    assert incidents.war_room_name("inc", 7, "Ünïcödé café") == "inc-7-unicode-cafe"
    assert incidents.war_room_name("inc", 7, "🔥!!!") == "inc-7"
    assert incidents.war_room_name("fire", 12, "--a--b--") == "fire-12-a-b"


def test_war_room_name_is_cut_to_80_without_a_trailing_dash() -> None:
    # Issue 21: names are now whole words within 48 characters; only a first word longer than
    # that is cut (here at the budget instead of 80), still never ending on a dash.
    name = incidents.war_room_name("inc", 7, "a" * 73 + " b")
    assert name == "inc-7-" + "a" * 42
    assert len(incidents.war_room_name("inc", 7, "word " * 100)) <= 80


def test_war_room_name_keeps_whole_words_well_under_slacks_80() -> None:
    title = "Error rate > 5% for 2 min: error rate for tai-autonomics is above the threshold"
    name = incidents.war_room_name("inc", 2, title)
    assert name == "inc-2-error-rate-5-for-2-min-error-rate-for-tai"
    assert len(name) <= incidents.WAR_ROOM_NAME_MAX < 80
    assert incidents.war_room_name("inc", 2, "HighErrorRate") == "inc-2-higherrorrate"


# -- parse_ref ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [("INC-7", 7), ("inc-7", 7), ("#7", 7), ("inc7", 7), ("Inc-0042", 42), (" INC-12 ", 12)],
)
def test_parse_ref_accepts(token: str, expected: int) -> None:
    assert incidents.parse_ref(token) == expected


@pytest.mark.parametrize(
    "token",
    ["7", "INC-", "INC-7a", "#", "incident-7", "INC--7", "", "INC-1234567890", "#-1", "p1", "I-7"],
)
def test_parse_ref_refuses_garbage(token: str) -> None:
    assert incidents.parse_ref(token) is None


# -- grammar.parse ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ParsedCommand("help", None, "")),
        ("   ", ParsedCommand("help", None, "")),
        ("ACK", ParsedCommand("ack", None, "")),
        ("Ack INC-7", ParsedCommand("ack", 7, "")),
        ("ack #12", ParsedCommand("ack", 12, "")),
        ("update inc7 DB  is back", ParsedCommand("update", 7, "DB  is back")),
        ("  resolve   INC-3   all good  ", ParsedCommand("resolve", 3, "all good")),
        (
            "declare p1 Checkout returns 500",
            ParsedCommand("declare", None, "p1 Checkout returns 500"),
        ),
        ("update INC-x is odd", ParsedCommand("update", None, "INC-x is odd")),
        ("severity INC-2 p1", ParsedCommand("severity", 2, "p1")),
        ("NOTE Keep The Case", ParsedCommand("note", None, "Keep The Case")),
    ],
)
def test_grammar_parse(text: str, expected: ParsedCommand) -> None:
    assert grammar.parse(text) == expected


def test_grammar_parse_splits_on_any_whitespace() -> None:
    assert grammar.parse("update\nDB is back") == ParsedCommand("update", None, "DB is back")
    assert grammar.parse("ack\tINC-7") == ParsedCommand("ack", 7, "")


# -- lifecycle ------------------------------------------------------------------------------


def test_declare_is_unnumbered_and_investigating() -> None:
    draft = incidents.declare(title="T", severity="P2", by="U1", now=T0, channel="C1")
    assert draft.number == 0
    assert draft.status == "investigating"
    assert draft.commander == draft.declared_by == "U1"
    assert draft.declared_at == T0
    assert draft.announcement_channel == "C1"
    assert draft.acknowledged_at is None
    assert draft.is_open


def test_acknowledge() -> None:
    inc = declared()
    change = incidents.acknowledge(inc, by="U0PRIMARY", now=T0 + timedelta(minutes=3))
    assert change == Change(
        replace(inc, acknowledged_at=T0 + timedelta(minutes=3), acknowledged_by="U0PRIMARY"),
        "ack",
        "U0PRIMARY",
        "<@U0PRIMARY> acknowledged INC-7",
    )
    assert inc.acknowledged_at is None  # the original is untouched


def test_second_acknowledge_is_a_no_op() -> None:
    first = incidents.acknowledge(declared(), by="U1", now=T0)
    assert first is not None
    assert incidents.acknowledge(first.incident, by="U2", now=T0 + timedelta(minutes=1)) is None


def test_acknowledge_on_resolved_incident_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        incidents.acknowledge(resolved(), by="U1", now=T0 + timedelta(hours=1))
    assert info.value.message == "INC-7 is resolved; declare a new incident if the problem is back."


def test_resolve_acknowledges_implicitly_and_escapes_the_summary() -> None:
    at = T0 + timedelta(minutes=18)
    change = incidents.resolve(declared(), by="U0LEAD", now=at, summary="<!channel> R&D fixed")
    assert change is not None
    new = change.incident
    assert (new.status, new.resolved_at, new.resolved_by) == ("resolved", at, "U0LEAD")
    assert (new.acknowledged_at, new.acknowledged_by) == (at, "U0LEAD")
    assert new.summary == "<!channel> R&D fixed"  # stored raw, escaped where shown
    assert change.kind == "resolve"
    assert change.text == "<@U0LEAD> resolved INC-7: &lt;!channel&gt; R&amp;D fixed"
    assert not new.is_open


def test_resolve_keeps_an_earlier_ack_and_empty_summary_is_none() -> None:
    acked = incidents.acknowledge(declared(), by="U0PRIMARY", now=T0 + timedelta(minutes=2))
    assert acked is not None
    change = incidents.resolve(acked.incident, by="U0LEAD", now=T0 + timedelta(hours=1), summary="")
    assert change is not None
    assert change.incident.acknowledged_at == T0 + timedelta(minutes=2)
    assert change.incident.acknowledged_by == "U0PRIMARY"
    assert change.incident.summary is None
    assert change.text == "<@U0LEAD> resolved INC-7"


def test_resolve_twice_is_a_no_op() -> None:
    assert incidents.resolve(resolved(), by="U1", now=T0 + timedelta(hours=2), summary="x") is None


def test_change_severity() -> None:
    inc = declared("P2")
    change = incidents.change_severity(inc, severity="P1", by="U1")
    assert change is not None
    assert change.incident.severity == "P1"
    assert change.kind == "severity"
    assert change.text == "<@U1> 🔺 raised severity P2 → P1"
    assert incidents.change_severity(inc, severity="P2", by="U1") is None
    with pytest.raises(UsageError):
        incidents.change_severity(resolved(), severity="P3", by="U1")


def test_assign_role() -> None:
    inc = declared()
    assert incidents.assign_role(inc, role="commander", user="U0DECLARER", by="U1") is None
    change = incidents.assign_role(inc, role="scribe", user="U0SCRIBE", by="U0DECLARER")
    assert change is not None
    assert change.incident.scribe == "U0SCRIBE"
    assert change.incident.role_holder("scribe") == "U0SCRIBE"
    assert change.text == "<@U0DECLARER> made <@U0SCRIBE> scribe"
    handover = incidents.assign_role(inc, role="commander", user="U0NEW", by="U0DECLARER")
    assert handover is not None
    assert handover.incident.commander == "U0NEW"
    assert handover.incident.declared_by == "U0DECLARER"
    with pytest.raises(UsageError):
        incidents.assign_role(resolved(), role="comms", user="U2", by="U1")


def test_post_update() -> None:
    at = T0 + timedelta(minutes=12)
    change = incidents.post_update(
        declared(), text="Rolled back <@U999> & watching", status="monitoring", by="U1", now=at
    )
    assert change.incident.last_update_at == at
    assert change.incident.status == "monitoring"
    assert change.kind == "update"
    assert change.text == ("<@U1> posted an update (monitoring): Rolled back &lt;@U999&gt; &amp; watching")
    keep = incidents.post_update(declared(), text="still looking", status=None, by="U1", now=at)
    assert keep.incident.status == "investigating"
    with pytest.raises(UsageError):
        incidents.post_update(resolved(), text="x", status=None, by="U1", now=at)


def test_sla_text_follows_the_policy() -> None:
    cfg = config.parse(config.default_config_text())
    assert incidents.sla_text(cfg, "P1") == ("ack within 5m · fix under way within 15m · update every 15m")
    assert incidents.sla_text(cfg, "P3") == "ack within 1h · update every 2h"
    assert incidents.sla_text(cfg, "P4") == "ack within 1d"


# -- mrkdwn -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!channel>", "&lt;!channel&gt;"),
        ("<!here|here>", "&lt;!here|here&gt;"),
        ("<@U123>", "&lt;@U123&gt;"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("R&D", "R&amp;D"),
        ("&amp;", "&amp;amp;"),
        ("plain *bold* text", "plain *bold* text"),
        ("", ""),
    ],
)
def test_escape(text: str, expected: str) -> None:
    assert mrkdwn.escape(text) == expected


def test_truncate_leaves_short_text_alone() -> None:
    assert mrkdwn.truncate("short", 5) == "short"
    assert mrkdwn.truncate("", 0) == ""


def test_truncate_marks_the_cut() -> None:
    assert mrkdwn.truncate("x" * 100, 20) == "xxxxxxx… (truncated)"
    assert len(mrkdwn.truncate("x" * 100, 20)) == 20


def test_truncate_never_splits_an_entity() -> None:
    # "ab&amp;..." cut in the middle of the first entity keeps "ab" only
    assert mrkdwn.truncate("ab&amp;" + "x" * 50, 17) == "ab" + mrkdwn.TRUNCATION_MARK


@pytest.mark.parametrize("limit", range(len(mrkdwn.TRUNCATION_MARK), 80))
@pytest.mark.parametrize("raw", ["&" * 60, "a<b>c&d " * 12, "<!channel> " * 10, "x&" * 40])
def test_truncate_escaped_text_stays_within_the_limit_and_whole(raw: str, limit: int) -> None:
    escaped = mrkdwn.escape(raw)
    out = mrkdwn.truncate(escaped, limit)
    assert len(out) <= limit
    if len(escaped) > limit:
        assert out.endswith(mrkdwn.TRUNCATION_MARK)
        body = out[: -len(mrkdwn.TRUNCATION_MARK)]
        assert escaped.startswith(body)
        assert "&" not in re.sub(r"&(amp|lt|gt);", "", body)


def test_user_text_escapes_then_cuts() -> None:
    assert mrkdwn.user_text("<!channel>", 100) == "&lt;!channel&gt;"
    assert mrkdwn.user_text("<" * 10, 20) == "&lt;" + mrkdwn.TRUNCATION_MARK  # "&lt;&lt" is cut back
    assert mrkdwn.user_text("<" * 10, 21) == "&lt;&lt;" + mrkdwn.TRUNCATION_MARK


def test_truncate_with_a_tiny_limit_still_fits() -> None:
    assert len(mrkdwn.truncate("x" * 100, 5)) <= 5


# -- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("0m", timedelta(0)),
        (" 15 m ", timedelta(minutes=15)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "m", "5M", "-5m", "1w", "5 minutes", "5m30s", "1e3s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == (f"{text!r} is not a duration (use a number and s, m, h or d: 30s, 5m, 2h, 1d)")


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=-30), "0s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=59.9), "59s"),
        (timedelta(seconds=60), "1m"),
        (timedelta(minutes=12, seconds=59), "12m"),
        (timedelta(hours=2), "2h"),
        (timedelta(hours=3, minutes=5), "3h 5m"),
        (timedelta(days=1), "1d"),
        (timedelta(days=2, hours=4, minutes=59), "2d 4h"),
    ],
)
def test_humanize(delta: timedelta, expected: str) -> None:
    assert humanize(delta) == expected
