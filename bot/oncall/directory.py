"""Who a name in the config means: role names, user IDs, emails, on-call schedules and Slack
user groups, resolved to Slack users at a given instant.

A role is resolved when a page is about to go out, not when the incident was declared, so a
step due after a handoff reaches whoever is on call by then.

Emails and user groups are Slack look-ups. Every one the config names is looked up at start-up
(`refresh`) and kept fresh in the background (`keep_fresh`), so that a request thread, which must
ack within Slack's 3 s, never waits on Slack: inside `cached_only()` a look-up is answered from
what is cached (however old), and one not cached yet is "not resolved" and fetched in the
background for next time.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError

from bot.core import text
from bot.delivery.errors import Undeliverable
from bot.domain import schedules
from bot.domain.incidents import Incident
from bot.domain.policy import INCIDENT_ROLES, Config
from bot.slack.gateway import SlackGateway, error_code, failure_code

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger(__name__)

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
# Slack writes a user group mention as <!subteam^S0123|@oncall-team> (older clients: no label).
_SUBTEAM = re.compile(r"^<!subteam\^([A-Z0-9]+)(?:\|@?([^>]*))?>$")
_HANDLE = re.compile(r"^@[a-z0-9][a-z0-9._-]*$")
USERGROUP_TTL_S = 300.0  # user groups change rarely; a page must not wait on two Slack calls each time
REFRESH_S = 300.0  # how often the background refresh looks up every email and user group again
RETRY_S = 30.0  # after a refresh that failed in part (Slack down, rate-limited)
FILL_GAP_S = 1.0  # a burst of cache misses in requests makes one background fill, not one each
# Errors that no retry will cure: said to a person rather than retried for ever.
_USERGROUP_FATAL = {"missing_scope", "not_allowed_token_type", "plan_upgrade_required", "paid_teams_only"}


class PeopleError(Undeliverable):
    """A name that does not lead to a Slack user; the message says which and why (a page to it
    cannot go yet, and is retried)."""


class NotLookedUp(PeopleError):
    """In a request thread (`Directory.cached_only`): an email or user group not cached yet."""


def config_lookups(config: Config) -> list[str]:
    """Every email and user group the config names, where a request may need it: `people`,
    the schedules' members, `permissions`, `rollback.allowed`, the escalation paths."""
    refs: list[str] = [ref for holders in config.people.values() for ref in holders]
    refs += [member for schedule in config.schedules.values() for member in schedule.members]
    refs += [ref for allowed in config.permissions.values() for ref in allowed]
    refs += list(config.rollback_allowed)
    refs += [ref for policy in config.severities.values() for step in policy.escalation for ref in step.page]
    return list(dict.fromkeys(ref for ref in refs if _is_lookup(ref)))


def _is_lookup(ref: str) -> bool:
    return ref.startswith(("@", "subteam:")) or ("@" in ref and not _USER_ID.match(ref))


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
        refresh_s: float = REFRESH_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.config = config
        self.slack = slack
        self.store = store
        self.clock = clock
        self.usergroup_ttl_s = usergroup_ttl_s
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        # `_lock` guards the caches and is held for no Slack call: a request thread reading them
        # never waits behind one. `_fetching` is held across a page's look-up and its Slack call.
        self._lock = threading.RLock()
        self._fetching = threading.RLock()
        self._handles: tuple[float, dict[str, str]] | None = None  # (fetched at, handle -> id)
        # id -> (fetched at, user IDs, or why the group cannot be read)
        self._members: dict[str, tuple[float, list[str] | PeopleError]] = {}
        # email (lower case) -> (fetched at, user ID, or None: no active user has it)
        self._emails: dict[str, tuple[float, str | None]] = {}
        self._request = threading.local()  # .cached_only: this thread answers from the caches only
        self._wanted: set[str] = set()  # look-ups a request missed, for the background to fill
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- caches filled ahead of time, for request threads ----------------------------------

    @contextmanager
    def cached_only(self) -> Iterator[None]:
        """Within this, in this thread, no look-up calls Slack (a request before its ack)."""
        before = getattr(self._request, "cached_only", False)
        self._request.cached_only = True
        try:
            yield
        finally:
            self._request.cached_only = before

    def _is_cached_only(self) -> bool:
        return bool(getattr(self._request, "cached_only", False))

    def _miss(self, ref: str) -> NotLookedUp:
        with self._lock:
            self._wanted.add(ref)
        self._wake.set()
        log.info("%s is not cached yet: not counted for this request, looked up in the background", ref)
        return NotLookedUp(f"{ref} has not been looked up in Slack yet")

    def refresh(self, slack: SlackGateway | None = None, refs: Iterable[str] | None = None) -> list[str]:
        """Look up again every email and user group the config names (or `refs`), through
        `slack` (default: the retrying gateway). What could not be looked up, in words; what was
        cached before stays (served stale) until a refresh succeeds."""
        gateway = slack or self.slack
        wanted = config_lookups(self.config) if refs is None else list(dict.fromkeys(refs))
        problems: list[str] = []
        handles_fetched = False
        for ref in wanted:
            try:
                if ref.startswith("@") and not handles_fetched:
                    self._fetch_handles(gateway)
                    handles_fetched = True
                if ref.startswith(("@", "subteam:")):
                    group_id = ref.removeprefix("subteam:") if ref.startswith("subteam:") else self._handle_id(ref)
                    if group_id is not None:
                        self._fetch_members(gateway, group_id, ref)
                else:
                    self._fetch_email(gateway, ref)
            except Exception as exc:  # noqa: BLE001 - kept stale, retried; never a request's problem
                code = failure_code(exc)
                problems.append(f"{ref} ({code})")
        if problems:
            log.warning("could not look up %s in Slack; retrying in %.0f s", ", ".join(problems), self.retry_s)
        return problems

    def keep_fresh(self, failed: bool = False) -> None:
        """Start the background refresh: every `refresh_s` (`retry_s` after a failure), and at
        once for a look-up a request missed. `failed`: the start-up fill did not complete."""
        self._refresher = threading.Thread(target=self._refresh_loop, args=(failed,), name="lookups", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _refresh_loop(self, failed: bool) -> None:
        due = time.monotonic() + (self.retry_s if failed else self.refresh_s)
        while not self._stop.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                if self._wake.is_set():
                    self._wake.clear()
                    with self._lock:
                        wanted, self._wanted = sorted(self._wanted), set()
                    if self.refresh(refs=wanted):
                        due = min(due, time.monotonic() + self.retry_s)
                    self._stop.wait(FILL_GAP_S)
                    continue
                due = time.monotonic() + (self.retry_s if self.refresh() else self.refresh_s)
            except Exception:  # noqa: BLE001 - the loop must outlive any one refresh
                log.exception("refreshing the Slack look-ups failed")
                due = time.monotonic() + self.retry_s

    def _fetch_handles(self, slack: SlackGateway) -> dict[str, str]:
        try:
            groups = slack.usergroups()
        except SlackApiError as exc:
            if error_code(exc) in _USERGROUP_FATAL:
                raise PeopleError(f"cannot list Slack user groups ({error_code(exc)})") from exc
            raise
        handles = {f"@{g['handle']}": str(g["id"]) for g in groups if g.get("handle")}
        with self._lock:
            self._handles = (time.monotonic(), handles)
        return handles

    def _handle_id(self, handle: str) -> str | None:
        with self._lock:
            return self._handles[1].get(handle) if self._handles is not None else None

    def _fetch_members(self, slack: SlackGateway, group_id: str, ref: str) -> list[str] | PeopleError:
        found: list[str] | PeopleError
        try:
            found = slack.usergroup_members(group_id)
        except SlackApiError as exc:
            code = error_code(exc)
            if code == "no_such_subteam":
                found = PeopleError(f"the Slack user group {ref} does not exist or is disabled")
            elif code in _USERGROUP_FATAL:
                found = PeopleError(f"cannot read the Slack user group {ref} ({code})")
            else:
                raise
        with self._lock:
            self._members[group_id] = (time.monotonic(), found)
        return found

    def _fetch_email(self, slack: SlackGateway, email: str) -> str | None:
        try:
            user: str | None = str(slack.lookup_email(email)["id"])
        except SlackApiError as exc:
            if error_code(exc) != "users_not_found":
                raise
            user = None
        with self._lock:
            self._emails[email.lower()] = (time.monotonic(), user)
        return user

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
        if self._is_cached_only():
            with self._lock:
                found = self._cached_usergroup(ref)
        else:
            # One lock around look-up and fetch: a page and its "who was paged" line, resolved at
            # the same moment, share one Slack call instead of each making its own.
            with self._fetching:
                group_id = ref.removeprefix("subteam:") if ref.startswith("subteam:") else self._usergroup_id(ref)
                with self._lock:
                    cached = self._members.get(group_id)
                fresh = cached is not None and time.monotonic() - cached[0] < self.usergroup_ttl_s
                # A group that could not be read is asked again: it may have been fixed since.
                if cached is not None and fresh and not isinstance(cached[1], PeopleError):
                    found = cached[1]
                else:
                    found = self._fetch_members(self.slack, group_id, ref)
        if isinstance(found, PeopleError):
            raise found
        if not found:
            raise PeopleError(f"the Slack user group {ref} has nobody in it")
        return found

    def _cached_usergroup(self, ref: str) -> list[str] | PeopleError:
        if ref.startswith("subteam:"):
            group_id: str | None = ref.removeprefix("subteam:")
        elif self._handles is None:
            raise self._miss(ref)
        else:
            group_id = self._handles[1].get(ref)
            if group_id is None:
                return PeopleError(f"no Slack user group has the handle {ref}")
        cached = self._members.get(str(group_id))
        if cached is None:
            raise self._miss(ref)
        return cached[1]

    def _usergroup_id(self, handle: str) -> str:
        with self._fetching:
            with self._lock:
                cached = self._handles
            if cached is None or time.monotonic() - cached[0] >= self.usergroup_ttl_s:
                handles = self._fetch_handles(self.slack)
            else:
                handles = cached[1]
        group_id = handles.get(handle)
        if group_id is None:
            raise PeopleError(f"no Slack user group has the handle {handle}")
        return group_id

    def _by_email(self, email: str) -> str:
        with self._lock:
            cached = self._emails.get(email.lower())
        if self._is_cached_only():
            if cached is None:
                raise self._miss(email)
            user = cached[1]
        elif cached is not None and cached[1] is not None and time.monotonic() - cached[0] < self.usergroup_ttl_s:
            user = cached[1]
        else:
            # Nobody with that email is asked again each time: they may have joined since.
            user = self._fetch_email(self.slack, email)
        if user is None:
            raise PeopleError(f"no Slack user has the email {email}")
        return user
