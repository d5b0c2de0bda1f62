"""Re-fires: an alert group firing again soon after its incident was resolved.

A flapping alert must not open a fresh incident (and page the whole path again) every time it
comes back. `fate` decides, from the group's latest incident, what a firing alert that has no
open incident of its own becomes: attached to that incident while it is open, a re-fire posted
in it (with a Reopen button) while it was resolved less than `alerts.reopen_within` ago, else
new, as routed. `message_key` names the one message a group's re-fires share in one resolution
of an incident, so later re-fires edit it instead of posting again. Pure: the clock is passed in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class Fate(StrEnum):
    """What a firing alert becomes once its group's latest incident is known."""

    NEW = "new"  # declared, proposed or ignored as routed, as if the group had no past
    ATTACH = "attach"  # the group's incident is open: the alert joins it
    REFIRE = "refire"  # resolved less than reopen_within ago: a message in it, nothing opened


@dataclass(frozen=True)
class LastIncident:
    """The latest incident an alert of the group (or the alert itself) belonged to."""

    number: int
    resolved_at: datetime | None  # None while it is open


def fate(last: LastIncident | None, now: datetime, reopen_within: timedelta) -> Fate:
    """`REFIRE` while `now` is less than `reopen_within` after the resolution (`0s`: never)."""
    if last is None:
        return Fate.NEW
    if last.resolved_at is None:
        return Fate.ATTACH
    if reopen_within > timedelta(0) and now - last.resolved_at < reopen_within:
        return Fate.REFIRE
    return Fate.NEW


def group_token(source: str, group_key: str, alert_id: str) -> str:
    """What makes alerts one group for re-fires: the source's group key, else the alert itself."""
    return f"{source}\x1f{group_key}" if group_key else f"{source}\x1f\x1falert:{alert_id}"


def message_key(number: int, resolved_at: datetime, token: str) -> str:
    """The key of the one message a group's re-fires share while the incident stays resolved:
    the incident, the resolution (to the second) and a digest of the group (group keys are long)."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]
    return f"alert-refire:{number}:{int(resolved_at.timestamp())}:{digest}"


def resolution_of(key: str) -> datetime | None:
    """The resolution a message key names (to the second), or None for a key of another shape."""
    parts = key.split(":")
    if len(parts) != 4 or parts[0] != "alert-refire" or not parts[2].isdecimal():
        return None
    return datetime.fromtimestamp(int(parts[2]), UTC)


def after_text(resolved_at: datetime, fired_at: datetime) -> str:
    """ "4 min after", "under a minute after": how long after the resolution it fired again."""
    minutes = int(max(timedelta(0), fired_at - resolved_at).total_seconds() // 60)
    return f"{minutes} min after" if minutes else "under a minute after"
