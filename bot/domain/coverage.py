"""Who holds a rotation over a stretch of time, as spans: the App Home's "your shifts" and the
readiness checks' "hours with nobody to reach". Pure: no I/O, no clock.

A span is one stretch with one person on call (a rotation shift, or the part of it an override
covers). `spans` walks `schedules.on_call` from one change to the next, so overrides starting,
ending or cleared mid-shift, and daylight-saving handoffs, come out exactly as paging sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from bot.domain.schedules import Override, Schedule, on_call, shift_start

MAX_SPANS = 2000  # a 20 s test rotation over 14 days would be 60,000: the walk stops here


@dataclass(frozen=True)
class Span:
    user: str  # as the schedule or override names them: a user ID or an email
    starts_at: datetime
    ends_at: datetime
    override: bool = False


@dataclass(frozen=True)
class Gap:
    """Hours in which a schedule's page reaches nobody."""

    schedule: str
    starts_at: datetime
    ends_at: datetime
    why: str  # "the rotation has not started", "<member> cannot be reached: ..."


def spans(schedule: Schedule, overrides: Iterable[Override], start: datetime, end: datetime) -> list[Span]:
    """Who is on call from `start` to `end`, merged where the same person continues."""
    overrides = [o for o in overrides if o.schedule == schedule.name]
    out: list[Span] = []
    at = start
    first = shift_start(schedule, 0)
    if at < first:
        at = min(first, end)
    while at < end and len(out) < MAX_SPANS:
        current = on_call(schedule, overrides, at)
        if current is None:  # cannot happen after the first shift; a guard against a loop
            break
        until = min(current.until, end)
        is_override = current.override is not None
        if out and out[-1].user == current.user and out[-1].ends_at == at and out[-1].override == is_override:
            out[-1] = Span(current.user, out[-1].starts_at, until, is_override)
        else:
            out.append(Span(current.user, at, until, is_override))
        at = until
    return out


def shifts_of(
    schedule: Schedule,
    overrides: Iterable[Override],
    is_me: Callable[[str], bool],
    start: datetime,
    end: datetime,
) -> list[Span]:
    """The spans in which the person `is_me` recognises is on call: now and next."""
    return [s for s in spans(schedule, overrides, start, end) if is_me(s.user)]


def gaps(
    schedule: Schedule,
    overrides: Iterable[Override],
    unreachable: Callable[[str], str | None],
    start: datetime,
    end: datetime,
) -> list[Gap]:
    """The stretches from `start` to `end` in which this schedule pages nobody: before its first
    shift, and while whoever is on call cannot be reached (`unreachable` says why, or None)."""
    out: list[Gap] = []
    first = shift_start(schedule, 0)
    if start < first:
        out.append(Gap(schedule.name, start, min(first, end), f"the rotation starts only {first:%Y-%m-%d %H:%M} UTC"))
    for span in spans(schedule, overrides, start, end):
        why = unreachable(span.user)
        if why is None:
            continue
        if span.override:
            why += " (an override)"
        if out and out[-1].ends_at == span.starts_at and out[-1].why == why:
            out[-1] = Gap(schedule.name, out[-1].starts_at, span.ends_at, why)
        else:
            out.append(Gap(schedule.name, span.starts_at, span.ends_at, why))
    return out
