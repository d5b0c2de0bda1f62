"""`alerts.reopen_within`: read, defaulted, shown by check-config, and refused by key when wrong."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot import config
from bot.cli import main
from tests.config.test_config import default_raw, errors_of


def with_alerts(**alerts: object) -> dict:
    raw = default_raw()
    raw["alerts"] = {"default": {"severity": "P2", "action": "propose"}, **alerts}
    return raw


def test_reopen_within_defaults_to_30m_and_0s_turns_it_off() -> None:
    assert config.parse(yaml.safe_dump(with_alerts())).alerts.reopen_within == timedelta(minutes=30)
    assert config.parse(yaml.safe_dump(with_alerts(reopen_within="5s"))).alerts.reopen_within == timedelta(seconds=5)
    assert config.parse(yaml.safe_dump(with_alerts(reopen_within="0s"))).alerts.reopen_within == timedelta(0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "alerts.reopen_within: 'soon' is not a duration"),
        ("-5m", "alerts.reopen_within: '-5m' is not a duration"),
        ("2d", "alerts.reopen_within: must be at most 1d"),
    ],
)
def test_a_wrong_reopen_within_is_named_by_its_key(value: str, message: str) -> None:
    errors = errors_of(with_alerts(reopen_within=value))
    assert [e for e in errors if e.startswith(message)], errors


def test_check_config_shows_reopen_within_and_reads_back_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alerts.yaml"
    path.write_text(yaml.safe_dump(with_alerts(reopen_within="45m")))
    assert main(["check-config", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert "reopen_within: 45m" in out
    assert config.parse(out).alerts.reopen_within == timedelta(minutes=45)


def test_check_config_refuses_a_wrong_reopen_within(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_alerts(reopen_within="half an hour")))
    assert main(["check-config", str(path)]) == 1
    _, err = capsys.readouterr()
    assert "alerts.reopen_within: 'half an hour' is not a duration" in err
