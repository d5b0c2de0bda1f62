"""Who is on call at an instant: rotations across handoffs, daylight-saving changes and leap days."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.durations import parse_duration
from bot.domain import schedules
from bot.domain.schedules import Override, Schedule, next_on_call, on_call, shift_at

BERLIN = ZoneInfo("Europe/Berlin")


def schedule(rotation: str = "daily", handoff: str = "09:00", start: date = date(2026, 11, 2), **kw) -> Schedule:
    weekly = rotation == "weekly"
    weekday, at = schedules.parse_handoff(handoff, weekly)
    return Schedule(
        name=kw.get("name", "primary"),
        timezone=kw.get("timezone", "Europe/Berlin"),
        rotation=rotation,
        length=schedules.parse_rotation(rotation),
        handoff_weekday=weekday,
        handoff_time=at,
        start=start,
        members=kw.get("members", ("U0AAA", "U0BBB", "U0CCC")),
    )


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def who(s: Schedule, at: datetime, overrides: tuple[Override, ...] = ()) -> str | None:
    current = on_call(s, overrides, at)
    return current.user if current else None


SECOND = timedelta(seconds=1)


def test_daily_rotation_hands_over_at_the_handoff_time():
    s = schedule("daily", "09:00")
    assert who(s, berlin(2026, 11, 2, 8, 59)) is None, "before the first shift nobody is on call"
    assert who(s, berlin(2026, 11, 2, 9, 0)) == "U0AAA"
    assert who(s, berlin(2026, 11, 3, 9, 0) - SECOND) == "U0AAA"
    assert who(s, berlin(2026, 11, 3, 9, 0)) == "U0BBB"
    assert who(s, berlin(2026, 11, 4, 12, 0)) == "U0CCC"
    assert who(s, berlin(2026, 11, 5, 9, 0)) == "U0AAA", "the rotation wraps round"
    current = on_call(s, (), berlin(2026, 11, 3, 10, 0))
    assert current is not None and current.until == berlin(2026, 11, 4, 9, 0)


def test_weekly_rotation_hands_over_on_the_weekday():
    s = schedule("weekly", "mon 09:00")
    assert who(s, berlin(2026, 11, 9, 9, 0) - SECOND) == "U0AAA"
    assert who(s, berlin(2026, 11, 9, 9, 0)) == "U0BBB"
    assert who(s, berlin(2026, 11, 15, 23, 0)) == "U0BBB"
    assert who(s, berlin(2026, 11, 16, 9, 0)) == "U0CCC"
    assert who(s, berlin(2026, 11, 23, 9, 0)) == "U0AAA"
    following = next_on_call(s, (), berlin(2026, 11, 10, 12, 0))
    assert following is not None and following.user == "U0CCC"


def test_a_weekly_rotation_starting_midweek_begins_at_the_first_handoff():
    s = schedule("weekly", "monday 09:00", start=date(2026, 11, 4))  # a Wednesday
    assert who(s, berlin(2026, 11, 8, 12, 0)) is None
    assert who(s, berlin(2026, 11, 9, 9, 0)) == "U0AAA"


def test_twelve_hour_rotation_hands_over_twice_a_day():
    s = schedule("12h", "09:00", members=("U0AAA", "U0BBB"))
    assert who(s, berlin(2026, 11, 2, 20, 59)) == "U0AAA"
    assert who(s, berlin(2026, 11, 2, 21, 0)) == "U0BBB"
    assert who(s, berlin(2026, 11, 3, 9, 0) - SECOND) == "U0BBB"
    assert who(s, berlin(2026, 11, 3, 9, 0)) == "U0AAA"


def test_daily_handoff_stays_at_nine_local_across_both_dst_changes():
    s = schedule("daily", "09:00", start=date(2026, 10, 20))
    # Autumn: 25 Oct 2026, Berlin goes from UTC+2 to UTC+1.
    assert on_call(s, (), utc(2026, 10, 24, 12)).shift.starts_at == utc(2026, 10, 24, 7)  # type: ignore[union-attr]
    assert on_call(s, (), utc(2026, 10, 25, 12)).shift.starts_at == utc(2026, 10, 25, 8)  # type: ignore[union-attr]
    assert who(s, utc(2026, 10, 25, 8) - SECOND) == who(s, utc(2026, 10, 24, 12))
    assert who(s, utc(2026, 10, 25, 8)) != who(s, utc(2026, 10, 24, 12))
    # Spring: 28 Mar 2027, Berlin goes from UTC+1 to UTC+2.
    assert on_call(s, (), utc(2027, 3, 27, 12)).shift.starts_at == utc(2027, 3, 27, 8)  # type: ignore[union-attr]
    assert on_call(s, (), utc(2027, 3, 28, 12)).shift.starts_at == utc(2027, 3, 28, 7)  # type: ignore[union-attr]


def test_twelve_hour_shift_over_the_autumn_change_lasts_thirteen_hours():
    s = schedule("12h", "09:00", start=date(2026, 10, 20), members=("U0AAA", "U0BBB"))
    night = shift_at(s, utc(2026, 10, 25, 1))
    assert night is not None
    assert night.starts_at == utc(2026, 10, 24, 19)  # 21:00 CEST
    assert night.ends_at == utc(2026, 10, 25, 8)  # 09:00 CET
    assert night.ends_at - night.starts_at == timedelta(hours=13)
    spring = shift_at(s, utc(2027, 3, 28, 1))
    assert spring is not None and spring.ends_at - spring.starts_at == timedelta(hours=11)


def test_a_handoff_in_the_skipped_hour_happens_when_the_clocks_jump():
    s = schedule("daily", "02:30", start=date(2027, 3, 20))
    # 28 Mar 2027 02:00 CET -> 03:00 CEST (01:00 UTC): 02:30 never shows on Berlin clocks.
    before = who(s, utc(2027, 3, 28, 1) - SECOND)
    assert on_call(s, (), utc(2027, 3, 28, 1)).shift.starts_at == utc(2027, 3, 28, 1)  # type: ignore[union-attr]
    assert who(s, utc(2027, 3, 28, 1)) != before


def test_hourly_shift_over_the_repeated_hour_is_one_shift():
    s = schedule("1h", "00:00", start=date(2026, 10, 24), members=("U0AAA", "U0BBB"))
    # 25 Oct 2026: 02:00-03:00 happens twice in Berlin (00:00-02:00 UTC).
    first = shift_at(s, utc(2026, 10, 25, 0, 30))
    second = shift_at(s, utc(2026, 10, 25, 1, 30))
    assert first == second, "the wall-clock hour 02:00-03:00 is one shift, however long it lasts"
    assert first is not None and first.ends_at - first.starts_at == timedelta(hours=2)


def test_leap_day_is_a_day_like_any_other():
    s = schedule("daily", "00:00", start=date(2028, 2, 27), timezone="UTC")
    assert who(s, utc(2028, 2, 28, 12)) == "U0BBB"
    assert who(s, utc(2028, 2, 29, 12)) == "U0CCC"
    assert who(s, utc(2028, 3, 1, 12)) == "U0AAA"
    three = schedule("3d", "09:00", start=date(2028, 2, 26), timezone="UTC")
    assert three.length == timedelta(days=3)
    assert who(three, utc(2028, 2, 29, 8, 59)) == "U0AAA"
    assert who(three, utc(2028, 2, 29, 9, 0)) == "U0BBB"
    assert who(three, utc(2028, 3, 3, 9, 0)) == "U0CCC"


def test_an_override_inside_a_shift_starts_and_ends_there():
    s = schedule("daily", "09:00")
    dentist = Override(
        id=1,
        schedule="primary",
        user="U0SAM",
        starts_at=berlin(2026, 11, 3, 13, 0),
        ends_at=berlin(2026, 11, 3, 15, 0),
        created_by="U0BBB",
        created_at=berlin(2026, 11, 3, 8, 0),
    )
    overrides = (dentist,)
    before = on_call(s, overrides, berlin(2026, 11, 3, 12, 59))
    assert before is not None and before.user == "U0BBB" and before.until == dentist.starts_at
    following = next_on_call(s, overrides, berlin(2026, 11, 3, 12, 59))
    assert following is not None and following.user == "U0SAM"
    during = on_call(s, overrides, berlin(2026, 11, 3, 13, 0))
    assert during is not None and during.user == "U0SAM" and during.override == dentist
    assert during.until == dentist.ends_at
    assert who(s, berlin(2026, 11, 3, 15, 0), overrides) == "U0BBB"
    after = on_call(s, overrides, berlin(2026, 11, 3, 15, 0))
    assert after is not None and after.until == berlin(2026, 11, 4, 9, 0)
    assert who(s, berlin(2026, 11, 3, 13, 0), (Override(**{**vars(dentist), "schedule": "other"}),)) == "U0BBB"


def test_a_cleared_override_ends_when_cleared_and_the_latest_override_wins():
    s = schedule("daily", "09:00")
    first = Override(
        1, "primary", "U0SAM", berlin(2026, 11, 3, 10), berlin(2026, 11, 3, 18), "U0BBB", berlin(2026, 11, 3, 10)
    )
    second = Override(
        2, "primary", "U0PAT", berlin(2026, 11, 3, 11), berlin(2026, 11, 3, 12), "U0BBB", berlin(2026, 11, 3, 11)
    )
    assert who(s, berlin(2026, 11, 3, 11, 30), (first, second)) == "U0PAT"
    assert who(s, berlin(2026, 11, 3, 12, 30), (first, second)) == "U0SAM"
    cleared = Override(**{**vars(first), "cleared_at": berlin(2026, 11, 3, 14), "cleared_by": "U0SAM"})
    assert who(s, berlin(2026, 11, 3, 13, 59), (cleared,)) == "U0SAM"
    assert who(s, berlin(2026, 11, 3, 14, 0), (cleared,)) == "U0BBB"


def test_shifts_tile_time_without_gaps_across_a_year_of_dst_changes():
    rng = random.Random(7)
    for rotation, handoff in (
        ("daily", "02:30"),
        ("12h", "02:15"),
        ("weekly", "sun 02:30"),
        ("1h", "00:00"),
        ("7s", "00:00"),
    ):
        s = schedule(rotation, handoff, start=date(2026, 1, 1))
        for _ in range(300):
            at = utc(2026, 1, 5) + timedelta(seconds=rng.randrange(0, 365 * 86400))
            shift = shift_at(s, at)
            assert shift is not None
            assert shift.starts_at <= at < shift.ends_at, (rotation, at)
            following = shift_at(s, shift.ends_at)
            assert following is not None and following.index == shift.index + 1
            assert following.starts_at == shift.ends_at


def test_override_end_takes_a_duration_or_a_time_on_the_schedules_clock():
    s = schedule("daily", "09:00")
    now = berlin(2026, 11, 3, 17, 0)
    assert schedules.override_end("4h", s, now, parse_duration) == now + timedelta(hours=4)
    assert schedules.override_end("until 18:00", s, now, parse_duration) == berlin(2026, 11, 3, 18, 0)
    assert schedules.override_end("until 08:30", s, now, parse_duration) == berlin(2026, 11, 4, 8, 30)
    with pytest.raises(ValueError):
        schedules.override_end("until 25:00", s, now, parse_duration)
    with pytest.raises(ValueError):
        schedules.override_end("soon", s, now, parse_duration)


@pytest.mark.parametrize(
    ("rotation", "handoff", "weekly", "problem"),
    [
        ("fortnightly", "09:00", False, "rotation"),
        ("0h", "09:00", False, "rotation"),
        ("weekly", "09:00", True, "weekly handoff"),
        ("weekly", "funday 09:00", True, "weekly handoff"),
        ("daily", "mon 09:00", False, "handoff time"),
        ("daily", "9am", False, "HH:MM"),
        ("daily", "24:00", False, "HH:MM"),
    ],
)
def test_bad_rotations_and_handoffs_are_refused(rotation, handoff, weekly, problem):
    with pytest.raises(ValueError, match=problem):
        schedules.parse_rotation(rotation)
        schedules.parse_handoff(handoff, weekly)


def test_parsing_words():
    assert schedules.parse_rotation("weekly") == timedelta(days=7)
    assert schedules.parse_rotation("12h") == timedelta(hours=12)
    assert schedules.parse_rotation("20s") == timedelta(seconds=20)
    assert schedules.parse_handoff("Mon 09:00", True) == (0, time(9, 0))
    assert schedules.parse_handoff("sunday 23:30", True) == (6, time(23, 30))
    with pytest.raises(ValueError, match="IANA"):
        schedules.check_timezone("Mars/Olympus_Mons")


def test_describe_says_who_now_until_when_and_next():
    s = schedule("daily", "09:00")
    lines = schedules.describe(s, (), berlin(2026, 11, 3, 10, 0), lambda u: f"<@{u}>")
    assert lines == ["*primary* (daily, Europe/Berlin): <@U0BBB> until Wed 09:00 (Europe/Berlin), then <@U0CCC>"]
