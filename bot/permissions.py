"""Who may do what: one check that commands and buttons call before changing production.

This is the part the rollback and scale flows need: `rollback` and `scale` are allowed to the
people `rollback.allowed` names (configured roles under `people`, incident roles such as
`incident_commander` meaning the holders in the incident at hand, or user IDs). A refusal
raises `Forbidden`, whose message says who may do it, and is written to the audit log.
"""

from __future__ import annotations

import logging

from bot.context import Context
from bot.errors import UsageError
from bot.incidents import Incident
from bot.people import mentioned_user

log = logging.getLogger(__name__)

ACTIONS = ("rollback", "scale")


class Forbidden(UsageError):
    """The user may not do this; the message says who may."""


def allowed_refs(ctx: Context, action: str) -> tuple[str, ...]:
    """The config entries (roles, incident roles, user IDs) allowed to do `action`."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    return ctx.config.rollback_allowed


def allowed_users(ctx: Context, action: str, incident: Incident | None) -> list[str]:
    """Slack user IDs allowed to do `action` in `incident` now (holders that cannot be
    resolved, such as an email nobody has, are left out rather than failing the check)."""
    users: list[str] = []
    for ref in allowed_refs(ctx, action):
        try:
            found, _ = ctx.directory.resolve(ref, incident)
        except Exception:  # noqa: BLE001 - Slack down while looking up an email: that holder is skipped
            log.warning("could not resolve %s for %s", ref, action, exc_info=True)
            found = []
        users.extend(found)
    return list(dict.fromkeys(users))


def describe(ctx: Context, action: str, incident: Incident | None) -> str:
    """`the incident commander (<@U1>), oncall_primary (<@U2>), tech_lead (<@U3>)`."""
    parts = []
    for ref in allowed_refs(ctx, action):
        try:
            found, _ = ctx.directory.resolve(ref, incident)
        except Exception:  # noqa: BLE001
            found = []
        holders = ", ".join(f"<@{u}>" for u in found)
        user = mentioned_user(ref)
        if user:
            parts.append(f"<@{user}>")
            continue
        name = "the incident " + ref.removeprefix("incident_") if ref.startswith("incident_") else f"`{ref}`"
        parts.append(f"{name} ({holders})" if holders else f"{name} (nobody now)")
    return ", ".join(parts) or "nobody (see `rollback.allowed` in the config)"


def require(ctx: Context, action: str, user: str, incident: Incident | None) -> None:
    """Raise Forbidden, and audit the refusal, unless `user` may do `action` in `incident`."""
    if user in allowed_users(ctx, action, incident):
        return
    who = describe(ctx, action, incident)
    if incident is not None:
        ctx.store.record_audit(
            incident.number,
            ctx.now(),
            user,
            "refused",
            {"action": action, "reason": "not allowed", "allowed": list(allowed_refs(ctx, action))},
        )
    raise Forbidden(f"You may not {_verb(action)}. Who may: {who}.")


def _verb(action: str) -> str:
    return {"rollback": "roll back the service", "scale": "scale the service"}.get(action, action)
