"""The effective config as YAML again, for `incident-bot check-config`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml

from bot.domain import schedules as schedules_module
from bot.domain.policy import AlertRule, AlertsConfig, Config


def fmt(delta: timedelta | None) -> str | None:
    """A duration as the config writes it (`30m`, `1d`, `45s`)."""
    if delta is None:
        return None
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def describe(config: Config) -> str:
    """The effective config as YAML, for `incident-bot check-config`."""
    data: dict[str, Any] = {
        "channel": config.channel,
        "war_room": {
            "severities": list(config.war_room_severities),
            "prefix": config.war_room_prefix,
        },
        "people": {role: list(holders) for role, holders in config.people.items()},
        "severities": {
            name: {
                k: v
                for k, v in {
                    "label": p.label,
                    "description": p.description,
                    "ack_within": fmt(p.ack_within),
                    "fix_within": fmt(p.fix_within),
                    "update_every": fmt(p.update_every),
                    "notify": list(p.notify) or None,
                    "escalation": [{"after": fmt(s.after), "page": list(s.page)} for s in p.escalation],
                }.items()
                if v is not None
            }
            for name, p in config.severities.items()
        },
        "postmortem": {
            "severities": list(config.postmortem_severities),
            "due_after": fmt(config.postmortem_due_after),
            "share_within": fmt(config.postmortem_share_within),
        },
        "service": vars(config.service),
        "rollback": {
            "allowed": list(config.rollback_allowed),
            "require_second_person": config.rollback.require_second_person,
            "expires_after": fmt(config.rollback.expires_after),
            "operation_timeout": fmt(config.rollback.operation_timeout),
            "health_timeout": fmt(config.rollback.health_timeout),
        },
        "paging": {"manual_repeat_after": fmt(config.paging.manual_repeat_after) or "0s"},
        "verify": {
            "window": fmt(config.verify.window),
            "every": fmt(config.verify.every),
            "thresholds": {"error_rate": f"{config.verify.error_rate * 100:g}%", "p95": f"{config.verify.p95_ms:g}ms"},
            "smoke": [{"url": c.url, "expect": c.expect} for c in config.verify.smoke],
        },
        "permissions": {action: list(refs) for action, refs in config.permissions.items()},
    }
    if config.runbook_path:
        data["runbook"] = {"path": config.runbook_path}
    if config.statuspage:
        data["statuspage"] = {**vars(config.statuspage), "severities": list(config.statuspage.severities)}
    if config.pagerduty:
        data["pagerduty"] = {**vars(config.pagerduty), "severities": list(config.pagerduty.severities)}
        if config.pagerduty.api_token_env is None:
            del data["pagerduty"]["api_token_env"]
    if config.schedules:
        data["schedules"] = {
            name: {
                "timezone": s.timezone,
                "rotation": s.rotation,
                "handoff": (f"{schedules_module.WEEKDAYS[s.handoff_weekday]} " if s.handoff_weekday is not None else "")
                + s.handoff_time.strftime("%H:%M"),
                "start": s.start.isoformat(),
                "members": list(s.members),
                "allow_outside_overrides": s.allow_outside_overrides,
            }
            for name, s in config.schedules.items()
        }
    if config.alerts:
        data["alerts"] = describe_alerts(config.alerts)
    if config.oncall_checks:
        checks = config.oncall_checks
        data["oncall_checks"] = {
            "at": checks.at.strftime("%H:%M"),
            "timezone": checks.timezone,
            "horizon": fmt(checks.horizon),
            "channel": checks.channel or config.channel,
        }
    if config.heartbeat:
        data["heartbeat"] = {
            "url": config.heartbeat.url,
            "every": fmt(config.heartbeat.every),
            "max_backlog": fmt(config.heartbeat.max_backlog),
        }
    return f"# effective config ({config.source})\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def describe_alerts(alerts: AlertsConfig) -> dict[str, Any]:
    def rule(r: AlertRule) -> dict[str, Any]:
        match: dict[str, Any] = {}
        if r.policy is not None:
            match["policy"] = r.policy
        if r.labels:
            match["labels"] = dict(r.labels)
        return {"match": match, **vars(r.route)}

    return {
        "default": vars(alerts.default),
        "reopen_within": fmt(alerts.reopen_within),
        "rules": [rule(r) for r in alerts.rules],
    }
