"""On-call rotations and overrides: who is on call at an instant. Pure: no I/O, no clock.

A schedule hands the pager from one member to the next at fixed times on the wall clock of
its time zone: a weekly rotation with handoff "mon 09:00" hands over at 09:00 Berlin time
every Monday, in summer and in winter. Shift lengths are therefore measured on the wall clock,
not in elapsed seconds: a 12h shift that spans the night clocks go back lasts 13 real hours.
A handoff whose wall time does not exist that day (inside the hour skipped in spring) happens
when the clocks jump over it.

Overrides put someone else on call for a while (a swap for a dentist appointment); the most
recently created override in force wins. They change who is on call, never when the rotation
hands over.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPS = timedelta(microseconds=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_NAMES = {**{d: i for i, d in enumerate(WEEKDAYS)}, **{d: i for i, d in enumerate(_FULL_NAMES)}}
_ROTATION = re.compile(r"^(\d+)\s*([dhms])$")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Schedule:
    name: str
    timezone: str
    rotation: str  # as written: daily, weekly, 3d, 12h (and 30m, 20s for tests)
    length: timedelta  # a shift on the wall clock
    handoff_weekday: int | None  # 0 = Monday; weekly rotations only
    handoff_time: time
    start: date
    members: tuple[str, ...]  # user IDs or emails, in rotation order
    # False: an override may hand a shift only to one of `members` (the holder becomes an on-call
    # role holder, so a responder everywhere); true lets anyone take it.
    allow_outside_overrides: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def origin(self) -> datetime:
        """The wall time the first shift begins: the first handoff on or after `start`."""
        day = self.start
        if self.handoff_weekday is not None:
            day += timedelta(days=(self.handoff_weekday - day.weekday()) % 7)
        return datetime.combine(day, self.handoff_time)


@dataclass(frozen=True)
class Override:
    """Someone on call in place of the rotation from `starts_at` until `ends_at` (or until cleared)."""

    id: int
    schedule: str
    user: str
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    cleared_by: str | None = None
    cleared_at: datetime | None = None

    @property
    def effective_end(self) -> datetime:
        return min(self.ends_at, self.cleared_at) if self.cleared_at else self.ends_at

    def in_force(self, at: datetime) -> bool:
        return self.starts_at <= at < self.effective_end


@dataclass(frozen=True)
class Shift:
    index: int  # 0 is the first shift of the rotation
    member: str
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC: the next handoff


@dataclass(frozen=True)
class OnCall:
    """Who is on call at an instant, until when, and why."""

    user: str
    until: datetime  # the next moment someone else may be on call (a handoff, an override starting or ending)
    shift: Shift
    override: Override | None = None


# -- parsing the config's words ---------------------------------------------------------------


def parse_rotation(text: str) -> timedelta:
    """`daily`, `weekly`, or a length such as `3d`, `12h` (`30m` and `20s` too, for tests)."""
    word = str(text).strip().lower()
    if word == "daily":
        return timedelta(days=1)
    if word == "weekly":
        return timedelta(days=7)
    match = _ROTATION.match(word)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a rotation (use daily, weekly, or a length such as 3d or 12h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_handoff(text: str, weekly: bool) -> tuple[int | None, time]:
    """`mon 09:00` for weekly rotations, `09:00` for the others -> (weekday or None, time)."""
    words = str(text).strip().lower().split()
    if weekly:
        if len(words) != 2 or words[0] not in _WEEKDAY_NAMES:
            raise ValueError(f'{text!r} is not a weekly handoff (use a weekday and a time, e.g. "mon 09:00")')
        return _WEEKDAY_NAMES[words[0]], _clock(words[1], text)
    if len(words) != 1:
        raise ValueError(f'{text!r} is not a handoff time (use a 24-hour time, e.g. "09:00")')
    return None, _clock(words[0], text)


def _clock(word: str, text: str) -> time:
    match = _CLOCK.match(word)
    if not match:
        raise ValueError(f'{text!r} is not a handoff (the time must be HH:MM on a 24-hour clock, e.g. "09:00")')
    return time(int(match.group(1)), int(match.group(2)))


def check_timezone(name: str) -> ZoneInfo:
    """The zone, or ValueError naming what is wrong."""
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)") from exc


# -- the wall clock ---------------------------------------------------------------------------


def wall(at: datetime, zone: ZoneInfo) -> datetime:
    """What the zone's clocks show at `at`, as a naive datetime."""
    return at.astimezone(zone).replace(tzinfo=None)


def instant(wall_time: datetime, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the zone's clocks show `wall_time` or later.

    An ordinary time maps to its one instant; a repeated one (autumn) to its first occurrence;
    a skipped one (spring) to the moment the clocks jump over it.
    """
    early = wall_time.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = wall_time.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early <= late:
        return early
    # Inside a gap: fold=0 reads it with the old offset (too late), fold=1 with the new one
    # (too early). The jump lies between; find it to the microsecond.
    low, high = late, early
    while high - low > _EPS:
        middle = low + (high - low) / 2
        if wall(middle, zone) >= wall_time:
            high = middle
        else:
            low = middle
    return high


def shift_start(schedule: Schedule, index: int) -> datetime:
    """The instant (UTC) shift number `index` begins."""
    return instant(schedule.origin + schedule.length * index, schedule.zone)


def shift_at(schedule: Schedule, at: datetime) -> Shift | None:
    """The rotation's shift at `at`; None before the first shift begins."""
    if at < shift_start(schedule, 0):
        return None
    index = max(0, (wall(at, schedule.zone) - schedule.origin) // schedule.length)
    # The estimate from the wall clock is off by a shift or so around a daylight-saving change.
    while shift_start(schedule, index + 1) <= at:
        index += 1
    while index > 0 and shift_start(schedule, index) > at:
        index -= 1
    return Shift(
        index=index,
        member=schedule.members[index % len(schedule.members)],
        starts_at=shift_start(schedule, index),
        ends_at=shift_start(schedule, index + 1),
    )


def on_call(schedule: Schedule, overrides: Iterable[Override], at: datetime) -> OnCall | None:
    """Who is on call for `schedule` at `at`: an override in force, else the rotation's member."""
    shift = shift_at(schedule, at)
    if shift is None:
        return None
    mine = [o for o in overrides if o.schedule == schedule.name]
    # Whoever is on call now stays until the shift ends or an override starts or ends.
    changes = [shift.ends_at]
    changes += [o.starts_at for o in mine if at < o.starts_at]
    changes += [o.effective_end for o in mine if at < o.effective_end]
    until = min(changes)
    in_force = [o for o in mine if o.in_force(at)]
    if in_force:
        latest = max(in_force, key=lambda o: (o.created_at, o.id))
        return OnCall(latest.user, until, shift, latest)
    return OnCall(shift.member, until, shift)


def next_on_call(schedule: Schedule, overrides: Iterable[Override], at: datetime) -> OnCall | None:
    """Who takes over from whoever is on call at `at` (skipping changes that keep the same person)."""
    overrides = list(overrides)
    now = on_call(schedule, overrides, at)
    if now is None:
        return None
    probe = now
    for _ in range(len(schedule.members) + 2 * len(overrides) + 1):
        following = on_call(schedule, overrides, probe.until)
        if following is None or following.user != now.user:
            return following
        probe = following
    return None


def handoff_after(schedule: Schedule, at: datetime) -> datetime:
    """The first rotation handoff strictly after `at`."""
    shift = shift_at(schedule, at)
    return shift.ends_at if shift is not None else shift_start(schedule, 0)


def override_end(text: str, schedule: Schedule, now: datetime, parse_duration: Callable[[str], timedelta]) -> datetime:
    """`4h` or `until 18:00` (on the schedule's clock; tomorrow if that time has passed) -> UTC."""
    words = text.strip().lower().split()
    if len(words) == 2 and words[0] == "until":
        clock = _clock(words[1], words[1])
        local_now = wall(now, schedule.zone)
        target = datetime.combine(local_now.date(), clock)
        if target <= local_now:
            target += timedelta(days=1)
        return instant(target, schedule.zone)
    return now + parse_duration(text.strip())


def when(at: datetime, schedule: Schedule, now: datetime) -> str:
    """`Mon 09:00 (Europe/Berlin)`; seconds for rotations shorter than a minute."""
    local = at.astimezone(schedule.zone)
    text = local.strftime("%a %H:%M:%S" if schedule.length < timedelta(minutes=1) else "%a %H:%M")
    if at - now > timedelta(days=6):
        text = local.strftime("%a %d %b %H:%M")
    return f"{text} ({schedule.timezone})"


def describe(schedule: Schedule, overrides: Iterable[Override], now: datetime, name: Callable[[str], str]) -> list[str]:
    """Lines for `/incident oncall` and `incident-bot oncall`: now, until when, next, overrides."""
    overrides = [o for o in overrides if o.schedule == schedule.name]
    head = f"*{schedule.name}* ({schedule.rotation}, {schedule.timezone})"
    current = on_call(schedule, overrides, now)
    if current is None:
        first = shift_start(schedule, 0)
        return [f"{head}: starts {when(first, schedule, now)} with {name(schedule.members[0])}"]
    following = next_on_call(schedule, overrides, now)
    line = f"{head}: {name(current.user)} until {when(current.until, schedule, now)}"
    if current.override is not None:
        line += " (override)"
    if following is not None:
        line += f", then {name(following.user)}"
    lines = [line]
    for o in sorted((o for o in overrides if o.effective_end > now), key=lambda o: o.starts_at):
        lines.append(
            f"    ↳ override: {name(o.user)} from {when(o.starts_at, schedule, now)} "
            f"until {when(o.effective_end, schedule, now)}, set by {name(o.created_by)}"
        )
    return lines
