"""What is on call, as text: the rotations (with overrides), the roles and the open incidents'
roles. One text for `/incident oncall` and `incident-bot oncall`, each saying people its own way."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bot.domain import schedules
from bot.domain.policy import Config
from bot.store import Store


def roster_text(
    config: Config, store: Store, now: datetime, name: Callable[[str], str], holders: Callable[[str], str]
) -> str:
    """What `/incident oncall` and `incident-bot oncall` show; `name` and `holders` say people
    the way the destination reads them (mentions in Slack, IDs on a terminal)."""
    lines = []
    for schedule in config.schedules.values():
        lines += schedules.describe(schedule, store.overrides(schedule.name, ending_after=now), now, name)
    for role in config.people:
        lines.append(f"*{role}*: {holders(role)}")
    for incident in store.open_incidents()[:10]:
        roles = [f"commander {name(incident.commander)}"]
        roles += [f"{r} {name(u)}" for r in ("scribe", "comms") if (u := incident.role_holder(r))]
        lines.append(f"*{incident.ref}*: {', '.join(roles)}")
    return "\n".join(lines) or "No roles are configured (see `people` in the config)."
