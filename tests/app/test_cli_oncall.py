"""`incident-bot oncall [--at TIME]`: who is on call, from the config and the store's overrides."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.store import Store
from tests.config.test_config_schedules import with_schedule


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    raw = with_schedule(rotation="daily", handoff="09:00", members=["U0AAA", "U0BBB", "pat@example.com"])
    path = tmp_path / "incident-bot.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("INCIDENT_BOT_CONFIG", str(path))
    monkeypatch.setenv("INCIDENT_BOT_DB", str(tmp_path / "incident-bot.db"))
    return tmp_path


def test_oncall_at_a_time_prints_now_until_when_next_and_the_roles(configured: Path, capsys):
    assert main(["oncall", "--at", "2026-11-03T10:00+01:00"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# on call at 2026-11-03 09:00:00 UTC")
    assert "primary (daily, Europe/Berlin): U0BBB until Wed 09:00 (Europe/Berlin), then pat@example.com" in out
    assert "oncall_primary: U0BBB (schedule:primary)" in out
    assert "support: @support-team, U0SUPPORT" in out
    assert not (configured / "incident-bot.db").exists(), "reading made no database"


def test_oncall_shows_an_override_from_the_store(configured: Path, capsys):
    store = Store(str(configured / "incident-bot.db"))
    start = datetime(2026, 11, 3, 9, 30, tzinfo=UTC)
    store.add_override("primary", "U0SAM", datetime(2026, 11, 3, 13, tzinfo=UTC), by="U0BBB", now=start)
    store.close()
    assert main(["oncall", "--at", "2026-11-03T10:00"]) == 0  # UTC when no offset is given
    out = capsys.readouterr().out
    assert "U0SAM until Tue 14:00 (Europe/Berlin) (override), then U0BBB" in out
    assert "override: U0SAM from Tue 10:30 (Europe/Berlin) until Tue 14:00 (Europe/Berlin), set by U0BBB" in out
    assert "oncall_primary: U0SAM (schedule:primary)" in out


def test_a_bad_time_is_refused(configured: Path, capsys):
    assert main(["oncall", "--at", "tomorrow"]) == 2
    assert "--at 'tomorrow' is not a time" in capsys.readouterr().err
