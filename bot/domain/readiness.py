"""On-call readiness: what would leave a page with nobody to reach, as problems. Pure: no I/O.

The facts come from the feature (`bot.oncall.readiness`: Slack's users.info, users.lookupByEmail
and user groups, the store's overrides); the rules are here. Each problem has a key that names
what is wrong, not when it was seen, so the daily check reports a problem once and again only
when it changes (its key is new, or it went away and came back).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.durations import humanize
from bot.domain.coverage import Gap, gaps
from bot.domain.schedules import Override, Schedule, when

PROBLEMS_SHOWN = 30  # a message lists this many; the rest are counted


@dataclass(frozen=True)
class Problem:
    key: str
    text: str  # mrkdwn


def schedule_problems(
    schedule: Schedule,
    overrides: Iterable[Override],
    unreachable: Callable[[str], str | None],
    now: datetime,
    horizon: timedelta,
) -> list[Problem]:
    """One problem per cause of hours with nobody on call to reach, listing those hours."""
    found = gaps(schedule, overrides, unreachable, now, now + horizon)
    by_cause: dict[str, list[Gap]] = {}
    for gap in found:
        by_cause.setdefault(gap.why, []).append(gap)
    out = []
    for why, stretches in by_cause.items():
        hours = sum((g.ends_at - g.starts_at for g in stretches), timedelta())
        spans = ", ".join(
            f"{when(g.starts_at, schedule, now)} – {when(g.ends_at, schedule, now)}" for g in stretches[:5]
        )
        more = f" and {len(stretches) - 5} more" if len(stretches) > 5 else ""
        out.append(
            Problem(
                f"gap:{schedule.name}:{why}",
                f"*{schedule.name}* pages nobody for {humanize(hours)}: {spans}{more}. Why: {why}.",
            )
        )
    return out


def role_problem(role: str, problems: Sequence[str]) -> Problem:
    detail = "; ".join(problems) or "it holds nobody"
    return Problem(f"role:{role}", f"The role *{role}* (under `people`) resolves to nobody: {detail}.")


def person_problem(ref: str, why: str, where: Sequence[str]) -> Problem:
    places = ", ".join(where)
    return Problem(f"person:{ref}:{why}", f"{why} (named in {places}).")


def group_problem(ref: str, why: str, role: str) -> Problem:
    return Problem(f"group:{ref}:{why}", f"{why} (in `people.{role}`).")


def message(new: Sequence[Problem], standing: int, horizon: timedelta) -> str:
    """The daily post: the problems not reported before, and how many reported ones still stand."""
    shown = [f"• {p.text}" for p in new[:PROBLEMS_SHOWN]]
    if len(new) > PROBLEMS_SHOWN:
        shown.append(f"• … and {len(new) - PROBLEMS_SHOWN} more: run `incident-bot check-oncall` for all of them")
    head = (
        f"🩺 *On-call readiness* (next {humanize(horizon)}): {len(new)} new problem(s) "
        "would leave a page with nobody to reach."
    )
    tail = f"\n_{standing} problem(s) reported before still stand._" if standing else ""
    return head + "\n" + "\n".join(shown) + tail


__all__ = ["Problem", "group_problem", "message", "person_problem", "role_problem", "schedule_problems"]
