"""`schedules:` in the config, and roles that hold schedules and Slack user groups."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import config
from bot.cli import main
from tests.config.test_config import default_raw, errors_of


def with_schedule(**changes: Any) -> dict[str, Any]:
    raw = default_raw()
    raw["schedules"] = {
        "primary": {
            "timezone": "Europe/Berlin",
            "rotation": "weekly",
            "handoff": "mon 09:00",
            "start": "2026-11-02",
            "members": ["U0AAA", "U0BBB", "pat@example.com"],
            **changes,
        }
    }
    raw["people"]["oncall_primary"] = ["schedule:primary"]
    raw["people"]["support"] = ["@support-team", "U0SUPPORT"]
    return raw


def test_a_schedule_and_roles_holding_it_and_a_user_group_parse():
    parsed = config.parse(yaml.safe_dump(with_schedule()))
    primary = parsed.schedules["primary"]
    assert primary.timezone == "Europe/Berlin"
    assert primary.length == timedelta(days=7)
    assert (primary.handoff_weekday, primary.handoff_time) == (0, time(9, 0))
    assert primary.start == date(2026, 11, 2)
    assert primary.members == ("U0AAA", "U0BBB", "pat@example.com")
    assert parsed.people["oncall_primary"] == ("schedule:primary",)
    assert parsed.people["support"] == ("@support-team", "U0SUPPORT")


def test_yaml_dates_and_a_default_handoff_are_accepted():
    raw = with_schedule(rotation="12h")
    del raw["schedules"]["primary"]["handoff"]
    text = yaml.safe_dump(raw).replace("start: '2026-11-02'", "start: 2026-11-02")
    parsed = config.parse(text)
    assert parsed.schedules["primary"].handoff_time == time(9, 0)
    assert parsed.schedules["primary"].start == date(2026, 11, 2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"timezone": "Europe/Berlinn"}, "schedules.primary.timezone: 'Europe/Berlinn' is not an IANA time zone"),
        ({"members": []}, "schedules.primary.members: must list at least one member"),
        ({"members": ["sam"]}, "schedules.primary.members[0]: 'sam' is not a Slack user ID"),
        ({"handoff": "09:00"}, "schedules.primary.handoff: '09:00' is not a weekly handoff"),
        ({"rotation": "daily", "handoff": "25:00"}, "schedules.primary.handoff: '25:00' is not a handoff"),
        ({"rotation": "monthly"}, "schedules.primary.rotation: 'monthly' is not a rotation"),
        ({"start": "next monday"}, "schedules.primary.start: 'next monday' is not a date"),
        ({"start": None}, "schedules.primary.start: is required"),
        ({"shift": "night"}, "schedules.primary.shift: unknown key"),
        ({"allow_outside_overrides": "yes"}, "schedules.primary.allow_outside_overrides: must be true or false"),
    ],
)
def test_bad_schedules_name_the_key(changes: dict[str, Any], expected: str):
    errors = errors_of(with_schedule(**changes))
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_overrides_stay_inside_the_rotation_unless_the_schedule_says_otherwise():
    assert config.parse(yaml.safe_dump(with_schedule())).schedules["primary"].allow_outside_overrides is False
    opened = config.parse(yaml.safe_dump(with_schedule(allow_outside_overrides=True)))
    assert opened.schedules["primary"].allow_outside_overrides is True
    assert config.parse(config.describe(opened)).schedules == opened.schedules


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, timedelta(minutes=5)), ("30s", timedelta(seconds=30)), ("0s", timedelta(0))],
)
def test_the_manual_page_repeat_window(value: str | None, expected: timedelta):
    raw = default_raw()
    raw.pop("paging", None)
    if value is not None:
        raw["paging"] = {"manual_repeat_after": value}
    parsed = config.parse(yaml.safe_dump(raw))
    assert parsed.paging.manual_repeat_after == expected
    assert config.parse(config.describe(parsed)).paging == parsed.paging


def test_a_bad_manual_page_repeat_window_names_the_key():
    raw = default_raw()
    raw["paging"] = {"manual_repeat_after": "soon", "burst": 3}
    errors = errors_of(raw)
    assert any(e.startswith("paging.manual_repeat_after: 'soon' is not a duration") for e in errors), errors
    assert any(e.startswith("paging.burst: unknown key") for e in errors), errors


def test_an_unknown_schedule_reference_names_the_role():
    raw = with_schedule()
    raw["people"]["oncall_secondary"] = ["schedule:secondary"]
    assert errors_of(raw) == [
        "people.oncall_secondary[0]: 'schedule:secondary' names no schedule under schedules (primary)"
    ]


def test_a_bad_user_group_handle_is_refused():
    raw = with_schedule()
    raw["people"]["support"] = ["@Support Team"]
    assert errors_of(raw)[0].startswith("people.support[0]: '@Support Team' is not a Slack user group handle")


def test_check_config_prints_schedules_and_they_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "incident-bot.yaml"
    path.write_text(yaml.safe_dump(with_schedule()), encoding="utf-8")
    assert main(["check-config", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "handoff: mon 09:00" in out
    assert config.parse(out).schedules == config.parse(path.read_text()).schedules


def test_check_config_reports_a_bad_timezone_with_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "incident-bot.yaml"
    path.write_text(yaml.safe_dump(with_schedule(timezone="Berlin")), encoding="utf-8")
    assert main(["check-config", str(path)]) == 1
    _, err = capsys.readouterr()
    assert "  - schedules.primary.timezone: 'Berlin' is not an IANA time zone" in err
