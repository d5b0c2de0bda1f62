"""Who a name in the config means: role names, user IDs, emails, on-call schedules and Slack
user groups, resolved to Slack users at a given instant.

A role is resolved when a page is about to go out, not when the incident was declared, so a
step due after a handoff reaches whoever is on call by then.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError

from bot.core import text
from bot.delivery.errors import Undeliverable
from bot.domain import schedules
from bot.domain.incidents import Incident
from bot.domain.policy import INCIDENT_ROLES, Config
from bot.slack.gateway import SlackGateway, error_code

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
# Slack writes a user group mention as <!subteam^S0123|@oncall-team> (older clients: no label).
_SUBTEAM = re.compile(r"^<!subteam\^([A-Z0-9]+)(?:\|@?([^>]*))?>$")
_HANDLE = re.compile(r"^@[a-z0-9][a-z0-9._-]*$")
USERGROUP_TTL_S = 300.0  # user groups change rarely; a page must not wait on two Slack calls each time
# Errors that no retry will cure: said to a person rather than retried for ever.
_USERGROUP_FATAL = {"missing_scope", "not_allowed_token_type", "plan_upgrade_required", "paid_teams_only"}


class PeopleError(Undeliverable):
    """A name that does not lead to a Slack user; the message says which and why (a page to it
    cannot go yet, and is retried)."""


def mentioned_user(token: str) -> str | None:
    """The user an argument names (a mention Slack made, `U123`): see `bot.core.text.mentioned_user`."""
    return text.mentioned_user(token)


def mentioned_usergroup(token: str) -> str | None:
    """`<!subteam^S0123|@oncall-team>` -> `subteam:S0123`; `@oncall-team` -> `@oncall-team`.

    The ID is kept when Slack gives one: it survives the group's handle being renamed.
    """
    token = token.strip()
    entity = text.single_entity(token)  # as Slack sent it, decoded at the dispatcher
    if entity is not None:
        return f"subteam:{entity.target}" if entity.kind == "usergroup" else None
    match = _SUBTEAM.match(token)  # typed out in full, or from a form
    if match:
        return f"subteam:{match.group(1)}"
    return token if _HANDLE.match(token) else None


def usergroup_label(token: str) -> str:
    """How a user group reads in a message, without notifying it: `@oncall-team` (or its ID)."""
    entity = text.single_entity(token)
    if entity is not None and entity.kind == "usergroup":
        return entity.plain
    match = _SUBTEAM.match(token.strip())
    if match:
        return f"@{match.group(2)}" if match.group(2) else match.group(1)
    return token.strip().removeprefix("subteam:")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Directory:
    def __init__(
        self,
        config: Config,
        slack: SlackGateway,
        store: Store | None = None,
        clock: Callable[[], datetime] = _utcnow,
        usergroup_ttl_s: float = USERGROUP_TTL_S,
    ) -> None:
        self.config = config
        self.slack = slack
        self.store = store
        self.clock = clock
        self.usergroup_ttl_s = usergroup_ttl_s
        self._lock = threading.RLock()
        self._handles: tuple[float, dict[str, str]] | None = None  # (fetched at, handle -> id)
        self._members: dict[str, tuple[float, list[str]]] = {}  # id -> (fetched at, user IDs)

    def is_known(self, ref: str) -> bool:
        return bool(
            ref in self.config.people
            or ref in INCIDENT_ROLES
            or ref.removeprefix("incident_") in INCIDENT_ROLES
            or _USER_ID.match(ref)
            or "@" in ref
            or ref.removeprefix("schedule:") in self.config.schedules
            or ref.startswith("subteam:")
        )

    def users(self, ref: str, incident: Incident | None = None, now: datetime | None = None) -> list[str]:
        """Slack user IDs for a role name, an incident role, a user ID, an email, a schedule or a
        user group, as they stand at `now` (the on-call person changes at each handoff).

        A role whose holders resolve only in part gives the ones that do: one departed holder
        must not stop the others being paged. It raises only when nobody can be reached.
        """
        users, problems = self.resolve(ref, incident, now)
        if not users:
            raise PeopleError("; ".join(problems) or f"nobody holds the role {ref}")
        return users

    def resolve(
        self, ref: str, incident: Incident | None = None, now: datetime | None = None
    ) -> tuple[list[str], list[str]]:
        """(Slack user IDs reached, problems with the holders that could not be)."""
        at = now or self.clock()
        if ref not in self.config.people:
            try:
                return self._one(ref, incident, at), []
            except PeopleError as exc:
                return [], [str(exc)]
        users: list[str] = []
        problems: list[str] = []
        for holder in self.config.people[ref]:
            try:
                users.extend(self._one(holder, incident, at))
            except PeopleError as exc:
                problems.append(str(exc))
        if not self.config.people[ref]:
            problems.append(f"nobody holds the role {ref} (see `people` in the config)")
        return list(dict.fromkeys(users)), problems

    def on_call(self, schedule: str, now: datetime) -> schedules.OnCall | None:
        """Who is on call for a configured schedule at `now`, overrides included."""
        overrides = self.store.overrides(schedule, ending_after=now) if self.store is not None else []
        return schedules.on_call(self.config.schedules[schedule], overrides, now)

    def schedule_members(self, schedule: str) -> list[str]:
        """A schedule's members as user IDs (those that resolve)."""
        found: list[str] = []
        for member in self.config.schedules[schedule].members:
            try:
                found.extend(self._one(member, None, self.clock()))
            except PeopleError:
                continue
        return found

    def usergroup_warnings(self) -> list[str]:
        """User group handles in `people` that name no group in the workspace (said at start-up)."""
        warnings = []
        for role, holders in self.config.people.items():
            for holder in holders:
                if not holder.startswith("@"):
                    continue
                try:
                    self._usergroup_id(holder)
                except PeopleError as exc:
                    warnings.append(f"people.{role}: {exc}")
                except SlackApiError as exc:
                    warnings.append(f"people.{role}: could not check {holder} ({error_code(exc)})")
        return warnings

    def warn_unknown_usergroups(self) -> None:
        """Log, at start-up, user group handles that name no group (paging them will fail)."""
        for warning in self.usergroup_warnings():
            log.warning("config: %s", warning)

    def _one(self, ref: str, incident: Incident | None, now: datetime) -> list[str]:
        if _USER_ID.match(ref):
            return [ref]
        if ref.startswith("schedule:"):
            return self._on_call(ref.removeprefix("schedule:"), incident, now)
        if ref.startswith("@") or ref.startswith("subteam:"):
            return self._usergroup(ref)
        if "@" in ref:
            return [self._by_email(ref)]
        incident_role = ref.removeprefix("incident_")
        if incident_role in INCIDENT_ROLES:
            holder = incident.role_holder(incident_role) if incident else None
            if not holder:
                raise PeopleError(
                    f"nobody holds the {incident_role} role" + (f" in {incident.ref}" if incident else "")
                )
            return [holder]
        if ref in self.config.people:
            return self.users(ref, incident, now)
        raise PeopleError(f"{ref!r} is not a role under `people`, a user ID or an email")

    def _on_call(self, name: str, incident: Incident | None, now: datetime) -> list[str]:
        if name not in self.config.schedules:
            raise PeopleError(f"there is no schedule {name} (see `schedules` in the config)")
        current = self.on_call(name, now)
        if current is None:
            first = schedules.shift_start(self.config.schedules[name], 0)
            raise PeopleError(f"the {name} rotation has not started yet (it starts {first:%Y-%m-%d %H:%M} UTC)")
        return self._one(current.user, incident, now)

    def _usergroup(self, ref: str) -> list[str]:
        # One lock around look-up and fetch: a page and its "who was paged" line, resolved at the
        # same moment, share one Slack call instead of each making its own.
        with self._lock:
            group_id = ref.removeprefix("subteam:") if ref.startswith("subteam:") else self._usergroup_id(ref)
            cached = self._members.get(group_id)
            if cached is not None and time.monotonic() - cached[0] < self.usergroup_ttl_s:
                members = cached[1]
            else:
                try:
                    members = self.slack.usergroup_members(group_id)
                except SlackApiError as exc:
                    code = error_code(exc)
                    if code == "no_such_subteam":
                        raise PeopleError(f"the Slack user group {ref} does not exist or is disabled") from exc
                    if code in _USERGROUP_FATAL:
                        raise PeopleError(f"cannot read the Slack user group {ref} ({code})") from exc
                    raise
                self._members[group_id] = (time.monotonic(), members)
        if not members:
            raise PeopleError(f"the Slack user group {ref} has nobody in it")
        return members

    def _usergroup_id(self, handle: str) -> str:
        with self._lock:
            cached = self._handles
            if cached is None or time.monotonic() - cached[0] >= self.usergroup_ttl_s:
                try:
                    groups = self.slack.usergroups()
                except SlackApiError as exc:
                    if error_code(exc) in _USERGROUP_FATAL:
                        raise PeopleError(f"cannot list Slack user groups ({error_code(exc)})") from exc
                    raise
                cached = (time.monotonic(), {f"@{g['handle']}": str(g["id"]) for g in groups if g.get("handle")})
                self._handles = cached
        group_id = cached[1].get(handle)
        if group_id is None:
            raise PeopleError(f"no Slack user group has the handle {handle}")
        return group_id

    def _by_email(self, email: str) -> str:
        try:
            return self.slack.user_by_email(email)
        except SlackApiError as exc:
            if error_code(exc) == "users_not_found":
                raise PeopleError(f"no Slack user has the email {email}") from exc
            raise
