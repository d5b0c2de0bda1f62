"""The bot's configuration: the YAML schema of DESIGN.md, read and validated into the frozen
dataclasses of `bot.domain.policy`.

Every validation error names the offending key (`severities.P1.ack_within`) and says what is
wrong, and all errors are reported at once so a config can be fixed in one pass. The reading is
`reader.py`; `describe.py` prints the effective config back (`incident-bot check-config`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from bot.config.describe import describe, describe_alerts
from bot.config.reader import Reader
from bot.domain.policy import (
    ALERT_ACTIONS,
    INCIDENT_ROLES,
    SEVERITIES,
    AlertRoute,
    AlertRule,
    AlertsConfig,
    Config,
    EscalationStep,
    PagerDutyConfig,
    RollbackRules,
    ServiceConfig,
    SeverityPolicy,
    StatuspageConfig,
)

# The config types are re-exported: `bot.config` is where a reader of the config looks first.
__all__ = [
    "ALERT_ACTIONS",
    "INCIDENT_ROLES",
    "SEVERITIES",
    "AlertRoute",
    "AlertRule",
    "AlertsConfig",
    "Config",
    "ConfigError",
    "EscalationStep",
    "RollbackRules",
    "ServiceConfig",
    "SeverityPolicy",
    "PagerDutyConfig",
    "StatuspageConfig",
    "default_config_text",
    "describe",
    "describe_alerts",
    "load",
    "parse",
]


class ConfigError(Exception):
    """The config is invalid; `errors` lists each problem as `key: what is wrong`."""

    def __init__(self, errors: list[str], source: str) -> None:
        super().__init__(f"{source}: " + "; ".join(errors))
        self.errors = errors
        self.source = source


# libyaml's safe loader parses ~10x faster than the pure-Python one: part of every cold start.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def default_config_text() -> str:
    return (Path(__file__).parent / "default_config.yaml").read_text(encoding="utf-8")


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the config from `path`, `$INCIDENT_BOT_CONFIG`, `./incident-bot.yaml`, or the default."""
    if path is None:
        path = os.environ.get("INCIDENT_BOT_CONFIG") or None
    if path is None and Path("incident-bot.yaml").exists():
        path = "incident-bot.yaml"
    if path is None:
        return parse(default_config_text(), source="built-in default")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read the file ({exc.strerror})"], str(path)) from exc
    return parse(text, source=str(path))


class _StrictLoader(_SAFE_LOADER):  # type: ignore[misc,valid-type]
    """PyYAML keeps the last of two equal keys without a word: a second `permissions:` block
    would silently undo the first. Here a repeated key is an error naming it."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse(text: str, source: str = "config") -> Config:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader, stricter
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], source) from exc
    if not isinstance(raw, dict):
        raise ConfigError(["the top level must be a mapping of keys (channel, severities, ...)"], source)
    reader = Reader()
    config = reader.config(raw, source)
    if reader.errors:
        raise ConfigError(reader.errors, source)
    assert config is not None
    return config
