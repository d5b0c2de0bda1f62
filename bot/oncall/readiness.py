"""On-call readiness checks: who would a page reach over the next `oncall_checks.horizon`?

`find_problems` asks Slack about every person the config names (users.info: deactivated?
users.lookupByEmail: does the email find anyone? user groups: any members?) and walks each
rotation with its overrides (`bot.domain.coverage`), then the rules of `bot.domain.readiness`
say what is a problem. `incident-bot check-oncall` prints them; `DailyCheck`, run by the leader
at `oncall_checks.at` in its time zone, posts the new ones once a day: the day's run is claimed
in the store with the problems and the post it owes, so a restart or an early run never checks
a day twice, and a run missed while the bot was down happens at start-up if it is at most
`GRACE` late.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import Announcing
from bot.core.durations import humanize
from bot.core.mrkdwn import escape
from bot.domain import readiness
from bot.domain.coverage import spans
from bot.domain.policy import INCIDENT_ROLES, Config, OnCallChecks
from bot.domain.readiness import Problem
from bot.domain.schedules import Override, check_timezone, instant, wall
from bot.oncall.directory import Directory, PeopleError
from bot.slack.gateway import SlackGateway, error_code
from bot.store import Store

log = logging.getLogger(__name__)

GRACE = timedelta(hours=6)  # a run missed while the bot was down, made up at start-up
RETRY_AFTER = timedelta(seconds=30)  # a post Slack did not take
_USER_ID_PREFIXES = ("U", "W")


def name(ref: str) -> str:
    return f"<@{ref}>" if ref[:1] in _USER_ID_PREFIXES and "@" not in ref else f"`{escape(ref)}`"


@dataclass
class Reach:
    """Whether a person can be reached, asked of Slack once per person per run."""

    slack: SlackGateway | None
    _seen: dict[str, str | None] = field(default_factory=dict)

    def why_not(self, ref: str) -> str | None:
        """None if `ref` (a user ID or an email) is an active Slack user, else why not."""
        if self.slack is None or ref in self._seen:
            return self._seen.get(ref)
        why: str | None = None
        try:
            if "@" in ref:
                record = self.slack.lookup_email(ref)
                if record.get("deleted"):
                    why = f"{name(ref)} is deactivated in Slack"
            else:
                record = self.slack.user_info(ref)
                if record.get("deleted"):
                    why = f"{name(ref)} is deactivated in Slack"
        except SlackApiError as exc:
            code = error_code(exc)
            if code == "users_not_found":
                why = f"no active Slack user has the email {name(ref)}"
            elif code == "user_not_found":
                why = f"{name(ref)} is not a user in this workspace"
            else:
                raise
        self._seen[ref] = why
        return why


def find_problems(
    config: Config,
    overrides: dict[str, list[Override]],
    directory: Directory | None,
    reach: Reach,
    now: datetime,
    horizon: timedelta,
) -> list[Problem]:
    """Everything that would leave a page with nobody to reach, from `now` over `horizon`.

    `directory` None (no Slack to ask): user groups are not checked, nor people (`reach`)."""
    problems: list[Problem] = []
    named_in: dict[str, list[str]] = {}

    def named(ref: str, where: str) -> None:
        named_in.setdefault(ref, [])
        if where not in named_in[ref]:
            named_in[ref].append(where)

    for schedule in config.schedules.values():
        for member in schedule.members:
            named(member, f"schedules.{schedule.name}")
        for o in overrides.get(schedule.name, []):
            if o.effective_end > now and o.starts_at < now + horizon:
                named(o.user, f"an override of {schedule.name}")
        problems += readiness.schedule_problems(schedule, overrides.get(schedule.name, []), reach.why_not, now, horizon)

    for role, holders in config.people.items():
        reached = 0
        why: list[str] = []
        for holder in holders:
            if holder.startswith("schedule:"):
                # Its hours with nobody are the schedule's own problem; the role fails through it
                # only when it reaches nobody at any hour (not every other day as shifts turn).
                schedule_name = holder.removeprefix("schedule:")
                rotation = config.schedules.get(schedule_name)
                if rotation is None:
                    why.append(f"there is no schedule {escape(schedule_name)}")
                    continue
                held = spans(rotation, overrides.get(schedule_name, []), now, now + horizon)
                if any(reach.why_not(span.user) is None for span in held):
                    reached += 1
                else:
                    why.append(f"the {escape(schedule_name)} rotation reaches nobody in the next {humanize(horizon)}")
                continue
            if holder.startswith("@") or holder.startswith("subteam:"):
                if directory is None:
                    reached += 1
                    continue
                found = _group(directory, reach, holder, role, problems)
                reached += found
                if not found:
                    why.append(f"the user group {escape(holder)} reaches nobody")
                continue
            if holder in config.people or holder.removeprefix("incident_") in INCIDENT_ROLES:
                reached += 1  # another role (checked on its own) or an incident's role holder
                continue
            named(holder, f"people.{role}")
            problem = reach.why_not(holder)
            if problem is None:
                reached += 1
            else:
                why.append(problem)
        if not reached:
            problems.append(readiness.role_problem(role, why))

    for ref, where in named_in.items():
        problem = reach.why_not(ref)
        if problem is not None:
            problems.append(readiness.person_problem(ref, problem, where))
    return problems


def _group(directory: Directory, reach: Reach, holder: str, role: str, problems: list[Problem]) -> int:
    """How many active members a user group has; a problem is added when it has none."""
    users, trouble = directory.resolve(holder)
    active = [u for u in users if reach.why_not(u) is None]
    if not active:
        why = "; ".join(trouble) or f"every member of the Slack user group {escape(holder)} is deactivated"
        problems.append(readiness.group_problem(holder, why, role))
    return len(active)


def overrides_by_schedule(config: Config, store: Store | None, now: datetime) -> dict[str, list[Override]]:
    if store is None:
        return {}
    return {name_: store.overrides(name_, ending_after=now) for name_ in config.schedules}


class DailyCheck:
    """The leader's daily run (`Timers.start_oncall_checks` calls `run` and places the next one)."""

    def __init__(
        self,
        config: Config,
        checks: OnCallChecks,
        store: Store,
        slack: SlackGateway,
        announcer: Announcing,
        directory: Directory,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.checks = checks
        self.store = store
        self.slack = slack
        self.announcer = announcer
        self.directory = directory
        self.clock = clock
        self.zone = check_timezone(checks.timezone)

    def due_before(self, now: datetime) -> tuple[str, datetime]:
        """The latest run time at or before `now`: (its local day, the instant)."""
        local = wall(now, self.zone)
        at = instant(datetime.combine(local.date(), self.checks.at), self.zone)
        if at > now:
            at = instant(datetime.combine(local.date() - timedelta(days=1), self.checks.at), self.zone)
        return wall(at, self.zone).date().isoformat(), at

    def next_after(self, now: datetime) -> datetime:
        local = wall(now, self.zone)
        for days in (0, 1, 2):
            at = instant(datetime.combine(local.date() + timedelta(days=days), self.checks.at), self.zone)
            if at > now:
                return at
        return now + timedelta(days=1)

    def run(self) -> datetime:
        """Check the day that came due (once), send the posts owed; when to run next. Never raises."""
        now = self.clock()
        try:
            day, due = self.due_before(now)
            if now - due <= GRACE and not self.store.oncall_check_claimed(day):
                self.check(day, now)
            unsent = self.send_pending()
        except Exception:  # noqa: BLE001 - the job must outlive any one failure; the store keeps what is owed
            log.exception("the on-call readiness check failed; trying again in %s", RETRY_AFTER)
            return now + RETRY_AFTER
        upcoming = self.next_after(now)
        return min(upcoming, now + RETRY_AFTER) if unsent else upcoming

    def check(self, day: str, now: datetime) -> bool:
        problems = find_problems(
            self.config,
            overrides_by_schedule(self.config, self.store, now),
            self.directory,
            Reach(self.slack),
            now,
            self.checks.horizon,
        )
        channel = self.checks.channel or self.config.channel

        def compose(new: list[Problem], standing: int) -> str:
            return readiness.message(new, standing, self.checks.horizon)

        claimed = self.store.claim_oncall_check(day, problems, compose, channel, now)
        log.info(
            "on-call readiness of %s: %d problem(s)%s", day, len(problems), "" if claimed else " (already checked)"
        )
        return claimed

    def send_pending(self) -> bool:
        """Post what the runs owe; True if something is left for a retry."""
        left = False
        for day, channel, text in self.store.pending_oncall_posts():
            try:
                # The ID, so that after a crash mid-post the channel's history can say whether it landed.
                channel_id = self.slack.channel_id(channel)
                self.announcer.post_once(f"oncall-check:{day}", channel_id or channel, text, channel_id=channel_id)
            except (SlackApiError, OSError) as exc:
                reason = error_code(exc) if isinstance(exc, SlackApiError) else str(exc)
                log.warning("the readiness post of %s to #%s failed (%s); retrying", day, channel, reason)
                left = True
                continue
            self.store.finish_oncall_post(day, self.clock())
        return left


def report(problems: list[Problem]) -> str:
    """What `check-oncall` prints."""
    if not problems:
        return "No problems: every page over the horizon reaches someone."
    return "\n".join(f"- {p.text}" for p in problems)


__all__ = ["DailyCheck", "PeopleError", "Reach", "find_problems", "overrides_by_schedule", "report"]
