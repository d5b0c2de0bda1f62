"""bot/config.py: the built-in default is the runbook, and bad configs say exactly what is wrong."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import config
from bot.cli import main
from bot.config import ConfigError
from bot.domain.policy import EscalationStep


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> config.Config:
    """`config.load(None)` with no env var and no ./incident-bot.yaml: the built-in default."""
    monkeypatch.delenv("INCIDENT_BOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return config.load(None)


def default_raw() -> dict[str, Any]:
    return yaml.safe_load(config.default_config_text())


def errors_of(raw: dict[str, Any] | str) -> list[str]:
    text = raw if isinstance(raw, str) else yaml.safe_dump(raw)
    with pytest.raises(ConfigError) as info:
        config.parse(text, source="test.yaml")
    return info.value.errors


# -- the built-in default reproduces the runbook ---------------------------------------------


def test_default_comes_from_the_built_in_text(default: config.Config) -> None:
    assert default.source == "built-in default"
    assert default.channel == "incident-response"


@pytest.mark.parametrize(
    ("severity", "ack", "fix", "updates"),
    [
        ("P1", minutes(5), minutes(15), minutes(15)),
        ("P2", minutes(15), minutes(30), minutes(30)),
        ("P3", timedelta(hours=1), None, timedelta(hours=2)),
        ("P4", timedelta(days=1), None, None),
    ],
)
def test_default_sla_per_severity(
    default: config.Config,
    severity: str,
    ack: timedelta,
    fix: timedelta | None,
    updates: timedelta | None,
) -> None:
    policy = default.policy(severity)
    assert policy.name == severity
    assert policy.ack_within == ack
    assert policy.fix_within == fix
    assert policy.update_every == updates


def test_default_labels(default: config.Config) -> None:
    labels = {name: p.label for name, p in default.severities.items()}
    assert labels == {"P1": "Critical", "P2": "High", "P3": "Medium", "P4": "Low"}


def test_default_p1_escalation_path(default: config.Config) -> None:
    assert default.policy("P1").escalation == (
        EscalationStep(after=minutes(0), page=("oncall_primary",)),
        EscalationStep(after=minutes(10), page=("oncall_secondary",)),
        EscalationStep(after=minutes(20), page=("vp_product",)),
        EscalationStep(after=minutes(30), page=("ceo",)),
    )


def test_default_other_escalation_paths(default: config.Config) -> None:
    assert default.policy("P2").escalation == (
        EscalationStep(after=minutes(0), page=("oncall_primary",)),
        EscalationStep(after=minutes(10), page=("oncall_secondary",)),
        EscalationStep(after=minutes(30), page=("vp_product",)),
    )
    assert default.policy("P3").escalation == (EscalationStep(after=minutes(0), page=("support",)),)
    assert default.policy("P4").escalation == (EscalationStep(after=minutes(0), page=("support",)),)


def test_default_notify_roles(default: config.Config) -> None:
    assert default.policy("P1").notify == ("vp_product", "tech_lead")
    assert default.policy("P2").notify == ("vp_product",)
    assert default.policy("P3").notify == ()
    assert default.policy("P4").notify == ()


def test_default_war_room_only_for_p1_and_p2(default: config.Config) -> None:
    assert default.war_room_severities == ("P1", "P2")
    assert default.war_room_prefix == "inc"
    assert [s for s in config.SEVERITIES if default.has_war_room(s)] == ["P1", "P2"]


def test_default_service_postmortem_rollback_people(default: config.Config) -> None:
    assert default.service == config.ServiceConfig(
        project="my-gcp-project",
        region="us-central1",
        name="tai-autonomics",
        health_url="https://api.example.com/health",
    )
    assert default.postmortem_severities == ("P1", "P2")
    assert default.postmortem_due_after == timedelta(hours=24)
    assert default.rollback_allowed == ("incident_commander", "oncall_primary", "tech_lead")
    assert set(default.people) == {
        "oncall_primary",
        "oncall_secondary",
        "vp_product",
        "ceo",
        "tech_lead",
        "support",
    }
    assert default.people["vp_product"] == ("vp@example.com",)
    assert default.statuspage is None
    assert default.runbook_path is None


# -- where the config comes from --------------------------------------------------------------


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = default_raw()
    raw["channel"] = "#ops-fire"
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INCIDENT_BOT_CONFIG", str(path))
    loaded = config.load(None)
    assert loaded.channel == "ops-fire"
    assert loaded.source == str(path)


def test_local_incident_bot_yaml_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    raw = default_raw()
    raw["war_room"]["prefix"] = "fire"
    (tmp_path / "incident-bot.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INCIDENT_BOT_CONFIG", raising=False)
    loaded = config.load(None)
    assert loaded.war_room_prefix == "fire"
    assert loaded.source == "incident-bot.yaml"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        config.load(missing)
    assert info.value.source == str(missing)
    assert len(info.value.errors) == 1
    assert info.value.errors[0].startswith("cannot read the file")


# -- errors name the key and say what is wrong ------------------------------------------------


def test_bad_duration_names_the_key() -> None:
    raw = default_raw()
    raw["severities"]["P1"]["ack_within"] = "5 minutes"
    errors = errors_of(raw)
    assert len(errors) == 1
    assert errors[0].startswith("severities.P1.ack_within: '5 minutes' is not a duration")
    assert "30s, 5m, 2h, 1d" in errors[0]


def test_bad_step_duration_names_the_step() -> None:
    raw = default_raw()
    raw["severities"]["P2"]["escalation"][1]["after"] = "ten"
    assert errors_of(raw) == [
        "severities.P2.escalation[1].after: 'ten' is not a duration (use a number and s, m, h or d: 30s, 5m, 2h, 1d)"
    ]


def test_unknown_top_level_key() -> None:
    raw = default_raw()
    raw["chanel"] = "typo"
    errors = errors_of(raw)
    assert len(errors) == 1
    # oncall_checks (issue 23) and heartbeat (issue 19) are top-level keys now, in their alphabetical place.
    assert errors[0].startswith(
        "chanel: unknown key (expected one of: alerts, channel, heartbeat, oncall_checks, pagerduty, paging, people,"
    )


def test_unknown_nested_key() -> None:
    raw = default_raw()
    raw["severities"]["P1"]["ack_whithin"] = "5m"
    errors = errors_of(raw)
    assert len(errors) == 1
    assert errors[0].startswith("severities.P1.ack_whithin: unknown key")
    assert "ack_within" in errors[0]


def test_unknown_role_in_escalation() -> None:
    raw = default_raw()
    raw["severities"]["P1"]["escalation"][3]["page"] = ["cto"]
    errors = errors_of(raw)
    assert len(errors) == 1
    assert errors[0].startswith("severities.P1.escalation[3].page[0]: 'cto' is not")
    assert "oncall_primary" in errors[0]  # lists the roles that do exist


def test_unknown_role_in_notify() -> None:
    raw = default_raw()
    raw["severities"]["P2"]["notify"] = ["vp_product", "marketing"]
    errors = errors_of(raw)
    assert len(errors) == 1
    assert errors[0].startswith("severities.P2.notify[1]: 'marketing' is not")


def test_user_ids_and_emails_are_accepted_in_escalation() -> None:
    raw = default_raw()
    raw["severities"]["P3"]["escalation"][0]["page"] = ["U0ABC123", "ops@example.com"]
    parsed = config.parse(yaml.safe_dump(raw))
    assert parsed.policy("P3").escalation[0].page == ("U0ABC123", "ops@example.com")


def test_out_of_order_steps() -> None:
    raw = default_raw()
    raw["severities"]["P1"]["escalation"][2]["after"] = "5m"  # after the 10m step
    assert errors_of(raw) == ["severities.P1.escalation[2].after: steps must be in order of their `after`"]


def test_step_without_anyone_to_page() -> None:
    raw = default_raw()
    raw["severities"]["P4"]["escalation"][0]["page"] = []
    assert errors_of(raw) == ["severities.P4.escalation[0].page: must name at least one role or user"]


def test_empty_escalation_is_refused() -> None:
    raw = default_raw()
    raw["severities"]["P3"]["escalation"] = []
    errors = errors_of(raw)
    assert errors == ["severities.P3.escalation: must be a non-empty list of {after, page} steps"]


def test_missing_severity() -> None:
    raw = default_raw()
    del raw["severities"]["P4"]
    assert errors_of(raw) == ["severities.P4: is required (every severity P1-P4 needs a policy)"]


def test_bad_health_url() -> None:
    raw = default_raw()
    raw["service"]["health_url"] = "api.example.com/health"
    assert errors_of(raw) == ["service.health_url: 'api.example.com/health' must be an http(s) URL"]


def test_missing_service_fields() -> None:
    raw = default_raw()
    del raw["service"]["name"]
    assert errors_of(raw) == ["service.name: is required"]


def test_bad_person_under_people() -> None:
    raw = default_raw()
    raw["people"]["ceo"] = ["the boss"]
    errors = errors_of(raw)
    assert errors == [
        "people.ceo[0]: 'the boss' is not a Slack user ID (U...), an email, schedule:<name> or @<usergroup-handle>"
    ]


def test_bad_war_room_severity_and_prefix() -> None:
    raw = default_raw()
    raw["war_room"] = {"severities": ["P1", "P7"], "prefix": "Incident Room"}
    errors = errors_of(raw)
    assert len(errors) == 2
    assert errors[0] == "war_room.severities[1]: 'P7' is not a severity (P1, P2, P3 or P4)"
    assert errors[1].startswith("war_room.prefix: 'Incident Room' must be 1-20 lowercase")


def test_bad_yaml() -> None:
    errors = errors_of("channel: [unclosed\nseverities: {")
    assert len(errors) == 1
    assert errors[0].startswith("not valid YAML")


@pytest.mark.parametrize("text", ["- just\n- a list\n", "plain string", "", "42"])
def test_non_mapping_top_level(text: str) -> None:
    assert errors_of(text) == ["the top level must be a mapping of keys (channel, severities, ...)"]


def test_all_errors_are_reported_at_once() -> None:
    raw = default_raw()
    raw["severities"]["P1"]["ack_within"] = "soon"
    raw["severities"]["P1"]["escalation"][1]["page"] = ["ghost"]
    raw["severities"]["P2"]["escalation"][2]["after"] = "1m"
    del raw["severities"]["P3"]
    raw["service"]["health_url"] = "ftp://example.com"
    raw["bogus"] = 1
    errors = errors_of(raw)
    keys = sorted(e.split(":", 1)[0] for e in errors)
    assert keys == [
        "bogus",
        "service.health_url",
        "severities.P1.ack_within",
        "severities.P1.escalation[1].page[0]",
        "severities.P2.escalation[2].after",
        "severities.P3",
    ]


def test_config_error_message_names_the_source() -> None:
    with pytest.raises(ConfigError) as info:
        config.parse("- a", source="/etc/bot.yaml")
    assert str(info.value).startswith("/etc/bot.yaml: the top level must be a mapping")
    assert info.value.source == "/etc/bot.yaml"


def test_lowercase_severity_keys_are_accepted() -> None:
    raw = default_raw()
    raw["severities"]["p4"] = raw["severities"].pop("P4")
    parsed = config.parse(yaml.safe_dump(raw))
    assert parsed.policy("P4").ack_within == timedelta(days=1)


# -- describe() round trip ------------------------------------------------------------------


def test_describe_round_trips_the_default(default: config.Config) -> None:
    text = config.describe(default)
    assert text.startswith("# effective config (built-in default)\n")
    assert config.parse(text) == default


def test_describe_round_trips_optional_sections() -> None:
    raw = default_raw()
    raw["runbook"] = {"path": "docs/runbook.md"}
    raw["statuspage"] = {"page_id": "abc123"}
    raw["severities"]["P2"]["ack_within"] = "90s"
    raw["severities"]["P3"]["update_every"] = "36h"
    raw["channel"] = "#war"
    original = config.parse(yaml.safe_dump(raw), source="x.yaml")
    text = config.describe(original)
    again = config.parse(text)
    assert again == original
    assert again.statuspage == config.StatuspageConfig(
        page_id="abc123",
        api_key_env="STATUSPAGE_API_KEY",
        api_url="https://api.statuspage.io/v1/",
    )
    assert again.runbook_path == "docs/runbook.md"
    assert again.policy("P2").ack_within == timedelta(seconds=90)
    assert again.channel == "war"
    described = yaml.safe_load(text)
    assert described["severities"]["P2"]["ack_within"] == "90s"
    assert described["severities"]["P3"]["update_every"] == "36h"
    assert described["severities"]["P1"]["escalation"][1] == {
        "after": "10m",
        "page": ["oncall_secondary"],
    }


# -- CLI: incident-bot check-config -----------------------------------------------------------


def test_check_config_prints_the_effective_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(config.default_config_text())
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"# effective config ({path})\n")
    assert config.parse(out) == config.parse(config.default_config_text())


def test_check_config_without_path_uses_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INCIDENT_BOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["check-config"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("# effective config (built-in default)")
    assert "name: tai-autonomics" in out


def test_check_config_reports_every_error_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = default_raw()
    raw["severities"]["P1"]["fix_within"] = "fast"
    raw["service"]["health_url"] = "localhost"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check-config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"{path}: 2 error(s)"
    assert lines[1].startswith("  - severities.P1.fix_within: 'fast' is not a duration")
    assert lines[2] == "  - service.health_url: 'localhost' must be an http(s) URL"
    assert len(lines) == 3


def test_check_config_on_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("severities: [\n")
    assert main(["check-config", str(path)]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"{path}: 1 error(s)\n  - not valid YAML")


def test_a_key_given_twice_is_an_error_not_a_silent_override() -> None:
    text = config.default_config_text() + "permissions:\n  resolve: [anyone]\n"
    with pytest.raises(ConfigError) as caught:
        config.parse(text)
    assert any("'permissions' appears twice" in error for error in caught.value.errors)


@pytest.mark.parametrize(
    ("allowed", "refused"),
    [
        (["incident_commander"], True),  # the default rollback.allowed: the proposer is the only one
        (["U0LEAD"], True),
        (["tech_lead"], True),  # a role with one holder
        (["incident_commander", "tech_lead"], False),
        (["oncall_primary", "tech_lead"], False),
    ],
)
def test_check_config_refuses_the_two_person_rule_with_only_one_person_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], allowed: list[str], refused: bool
) -> None:
    raw = default_raw()
    raw["rollback"]["allowed"] = allowed
    raw["rollback"]["require_second_person"] = True
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["check-config", str(path)]) == (1 if refused else 0)
    _, err = capsys.readouterr()
    if refused:
        assert "rollback.require_second_person: is true, but only one person may confirm a rollback" in err
        assert "nobody could ever confirm" in err
    else:
        assert err == ""


# -- pagerduty --------------------------------------------------------------------------------


def test_pagerduty_defaults_and_round_trip() -> None:
    raw = default_raw()
    raw["pagerduty"] = {"severities": ["p1"], "api_token_env": "PD_TOKEN"}
    original = config.parse(yaml.safe_dump(raw), source="x.yaml")
    assert original.pagerduty == config.PagerDutyConfig(
        routing_key_env="PAGERDUTY_ROUTING_KEY",
        severities=("P1",),
        webhook_secret_env="PAGERDUTY_WEBHOOK_SECRET",
        api_token_env="PD_TOKEN",
    )
    assert config.parse(config.describe(original)) == original
    raw["pagerduty"] = {}
    assert config.parse(yaml.safe_dump(raw)).pagerduty == config.PagerDutyConfig()
    assert config.parse(config.default_config_text()).pagerduty is None


def test_pagerduty_errors_name_their_key() -> None:
    raw = default_raw()
    raw["pagerduty"] = {"severities": ["P9"], "routing_key_env": "R0ABC DEF", "webhook_secret": "x"}
    errors = errors_of(raw)
    assert any(e.startswith("pagerduty.severities[0]: 'P9' is not a severity") for e in errors), errors
    assert any(e.startswith("pagerduty.routing_key_env: 'R0ABC DEF' is not an environment variable") for e in errors)
    assert any(e.startswith("pagerduty.webhook_secret: unknown key") for e in errors), errors
    assert len(errors) == 3


# -- heartbeat (issue 19) ---------------------------------------------------------------------


def test_heartbeat_defaults_and_round_trip() -> None:
    raw = default_raw()
    raw["heartbeat"] = {"url": "https://hc-ping.com/abc"}
    parsed = config.parse(yaml.safe_dump(raw))
    assert parsed.heartbeat is not None
    assert (parsed.heartbeat.every, parsed.heartbeat.max_backlog) == (timedelta(minutes=1), timedelta(minutes=2))
    assert config.parse(config.describe(parsed)) == parsed
    assert config.parse(yaml.safe_dump(default_raw())).heartbeat is None


def test_heartbeat_errors_name_the_key() -> None:
    raw = default_raw()
    raw["heartbeat"] = {"url": "not a url", "every": "0s", "max_backlog": "soon", "evry": "1m"}
    errors = errors_of(raw)
    assert any(e.startswith("heartbeat.url: 'not a url' is not an http(s) URL") for e in errors), errors
    assert any(e.startswith("heartbeat.every: must be longer than 0s") for e in errors), errors
    assert any(e.startswith("heartbeat.max_backlog:") for e in errors), errors
    assert any(e.startswith("heartbeat.evry: unknown key") for e in errors), errors
    raw["heartbeat"] = {"every": "1m"}
    assert "heartbeat.url: is required" in errors_of(raw)
