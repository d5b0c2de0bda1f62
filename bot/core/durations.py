"""Durations as the config writes them (`30s`, `5m`, `2h`, `1d`) and as people read them."""

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_duration(text: str) -> timedelta:
    """`5m` -> 5 minutes. Raises ValueError with the accepted forms."""
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (use a number and s, m, h or d: 30s, 5m, 2h, 1d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def humanize(delta: timedelta) -> str:
    """A compact, rounded-down duration: `45s`, `12m`, `3h 5m`, `2d 4h`."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"
