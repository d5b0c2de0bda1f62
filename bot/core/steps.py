"""Running independent steps so that one failure does not stop the others."""

from __future__ import annotations

from collections.abc import Callable


def each(*steps: Callable[[], object]) -> None:
    """Run every step even when one fails (a deleted announcement must not stop the stand-down
    DMs), then raise the first failure so the person who asked hears about it."""
    failures: list[Exception] = []
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - collected and re-raised below
            failures.append(exc)
    if failures:
        raise failures[0]
