"""Who may do what, as a pure rule: `may` decides, `who_may` says it in words. No I/O.

A rule is a list of who may: `anyone`; `responders`; `paged` (anyone paged for the incident at
hand); `escalation_path` (everyone the incident's severity pages at any step, paged yet or not);
`incident_commander`, `incident_scribe`, `incident_comms` (that role's holder in the incident
at hand); a role under `people`; a user ID; an email. `responders` means the incident's role
holders, anyone paged for it, and every role under `people` whose name starts with `oncall`.
The lookups a rule needs (who was paged, who holds a role) are made by `bot.permissions`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.core.errors import UsageError
from bot.domain.actions import (
    ANYONE,
    ESCALATION_PATH,
    INCIDENT_ROLE_REFS,
    ONCALL_PREFIX,
    PAGED,
    PHRASES,
    RESPONDERS,
    SCHEDULE_ACTIONS,
    SCHEDULE_MEMBERS,
    SPECIAL_REFS,
    default_rule,
)

if TYPE_CHECKING:
    from bot.domain.incidents import Incident
    from bot.domain.policy import Config

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class Forbidden(UsageError):
    """The user may not do this; the message says who may (`plain`: the same without mrkdwn, for forms)."""

    def __init__(self, message: str, action: str, plain: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.plain = plain or message


def rule(config: Config, action: str) -> tuple[str, ...]:
    """Who may do `action` under `config`, with `responders` spelt out."""
    refs = config.permissions.get(action) or default_rule(action, config.rollback_allowed)
    expanded: list[str] = []
    for ref in refs:
        if ref == RESPONDERS:
            expanded += [*INCIDENT_ROLE_REFS, PAGED, *oncall_roles(config)]
        else:
            expanded.append(ref)
    return tuple(dict.fromkeys(expanded))


def oncall_roles(config: Config) -> tuple[str, ...]:
    return tuple(role for role in config.people if role.startswith(ONCALL_PREFIX))


def escalation_refs(config: Config, incident: Incident | None) -> tuple[str, ...]:
    """Who the incident's severity pages, at every step of its path (roles, user IDs, emails)."""
    if incident is None or incident.severity not in config.severities:
        return ()
    steps = config.policy(incident.severity).escalation
    return tuple(dict.fromkeys(ref for step in steps for ref in step.page))


def lookups(config: Config, action: str, incident: Incident | None) -> tuple[str, ...]:
    """The names `may` would ask `holders` about for this action: roles, emails, the path's people."""
    refs = rule(config, action)
    named = [ref for ref in refs if ref not in SPECIAL_REFS]
    if ESCALATION_PATH in refs:
        named += escalation_refs(config, incident)
    return tuple(dict.fromkeys(named))


def may(
    config: Config,
    action: str,
    user: str,
    *,
    incident: Incident | None,
    paged: frozenset[str],
    holders: Mapping[str, frozenset[str]],
    schedule_members: frozenset[str] = frozenset(),
) -> bool:
    """Whether `user` may do `action` on `incident` (None: no incident at hand).

    `paged` is who has been paged for the incident; `holders` gives the users behind a role name
    or an email. Refs that need no lookup are tried first, so a lazy `holders` is asked only when
    nothing cheaper decided.
    """
    refs = rule(config, action)
    for ref in refs:
        if ref in (ANYONE, user):
            return True
        if ref == PAGED and user in paged:
            return True
        if ref == SCHEDULE_MEMBERS and user in schedule_members:
            return True
        if ref in INCIDENT_ROLE_REFS and incident is not None and incident.role_holder(INCIDENT_ROLE_REFS[ref]) == user:
            return True
    path = escalation_refs(config, incident) if ESCALATION_PATH in refs else ()
    if user in path:
        return True
    return any(user in holders.get(ref, frozenset()) for ref in lookups(config, action, incident))


def who_may(
    config: Config, action: str, incident: Incident | None, *, plain: bool = False, schedule: str | None = None
) -> str:
    """'Only …' in words, for the refusal: the roles by name, user IDs as mentions (bare when `plain`)."""
    refs = rule(config, action)
    if incident is None and action in SCHEDULE_ACTIONS:
        # About no incident: incident roles and the people paged for one cannot apply.
        refs = tuple(ref for ref in refs if ref not in INCIDENT_ROLE_REFS and ref != PAGED)
    where = incident.ref if incident is not None else "the incident"
    roles = [ref.removeprefix("incident_") for ref in refs if ref in INCIDENT_ROLE_REFS]
    parts = []
    if roles:
        parts.append(f"{where}'s " + _or(roles))
    if PAGED in refs:
        parts.append(f"people paged for {where}")
    if SCHEDULE_MEMBERS in refs:
        parts.append(f"the members of the {schedule} rotation" if schedule else "the rotation's members")
    if ESCALATION_PATH in refs:
        parts.append(f"the people on {where}'s escalation path")
    mention, quote = ("{}", "{}") if plain else ("<@{}>", "`{}`")
    parts += [(mention if USER_ID.match(ref) else quote).format(ref) for ref in refs if ref not in SPECIAL_REFS]
    return _or(parts) if parts else "nobody"


def describe_action(action: str, incident: Incident | None) -> str:
    return PHRASES[action].format(ref=incident.ref if incident is not None else "an incident")


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
