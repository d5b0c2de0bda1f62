"""The pure rule for a firing alert whose group had an incident: attach, re-fire, or new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.refires import Fate, LastIncident, after_text, fate, group_token, message_key, resolution_of

RESOLVED = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)


def clock(minutes: float) -> datetime:
    """The injected clock: this long after the resolution."""
    return RESOLVED + timedelta(minutes=minutes)


def test_no_past_incident_is_new() -> None:
    assert fate(None, clock(1), WINDOW) is Fate.NEW


def test_an_open_incident_is_attached_to() -> None:
    assert fate(LastIncident(7, None), clock(500), WINDOW) is Fate.ATTACH


def test_within_the_window_is_a_re_fire_and_after_it_new() -> None:
    resolved = LastIncident(7, RESOLVED)
    assert fate(resolved, clock(0), WINDOW) is Fate.REFIRE
    assert fate(resolved, clock(29.99), WINDOW) is Fate.REFIRE
    assert fate(resolved, clock(30), WINDOW) is Fate.NEW  # the window is "less than reopen_within"
    assert fate(resolved, clock(90), WINDOW) is Fate.NEW


def test_0s_turns_re_fires_off() -> None:
    assert fate(LastIncident(7, RESOLVED), clock(0), timedelta(0)) is Fate.NEW


def test_the_message_key_names_incident_resolution_and_group() -> None:
    token = group_token("alertmanager", '{}:{alertname="HighErrorRate"}', "fp1")
    key = message_key(7, RESOLVED, token)
    assert key.startswith(f"alert-refire:7:{int(RESOLVED.timestamp())}:")
    assert resolution_of(key) == RESOLVED
    assert key == message_key(7, RESOLVED + timedelta(microseconds=5), token)  # to the second
    assert key != message_key(7, RESOLVED + timedelta(minutes=5), token)  # a later resolution
    assert key != message_key(7, RESOLVED, group_token("alertmanager", "other", "fp1"))
    # Without a group key, the alert itself is its group.
    assert group_token("alertmanager", "", "fp1") != group_token("alertmanager", "", "fp2")
    assert resolution_of("alert-group:7:1") is None


def test_after_text() -> None:
    assert after_text(RESOLVED, clock(0.5)) == "under a minute after"
    assert after_text(RESOLVED, clock(4.2)) == "4 min after"
    assert after_text(RESOLVED, clock(-3)) == "under a minute after"  # started before it: never negative
