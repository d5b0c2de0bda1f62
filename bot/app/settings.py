"""Process settings from the environment (DESIGN.md's environment contract)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bot.paging.leadership import instance_name


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    bot_token: str
    signing_secret: str | None
    app_token: str | None = None
    slack_api_url: str | None = None
    cloud_run_api_url: str | None = None
    cloud_logging_api_url: str | None = None
    cloud_monitoring_api_url: str | None = None
    config_path: str | None = None
    db_path: str = "incident-bot.db"
    port: int = 3000
    http_threads: int = 32
    # The built-in config's placeholder people (U0PRIMARY…) would make every page fail: `serve`
    # refuses them unless told this is a sandbox (INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE=1).
    allow_example_people: bool = False
    alert_webhook_token: str | None = None  # unset: the alert webhooks are off
    # Set: GET /metrics and the detailed GET /health need `Authorization: Bearer <it>`.
    metrics_token: str | None = None
    # PagerDuty's Events API v2 enqueue URL and REST API base (the sandbox's in the demo and tests).
    pagerduty_events_url: str | None = None
    pagerduty_api_url: str | None = None
    # The timers' lease (bot/leadership.py): its length, and this process's name as its holder.
    lease_s: float = 10.0
    instance: str = field(default_factory=instance_name)
    # How long the Slack client waits for an answer; a delivery's sending deadline is 3 of these.
    slack_timeout_s: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        bot_token = env.get("SLACK_BOT_TOKEN", "")
        signing_secret = env.get("SLACK_SIGNING_SECRET") or None
        app_token = env.get("SLACK_APP_TOKEN") or None
        missing = []
        if not bot_token:
            missing.append("SLACK_BOT_TOKEN (the bot token, xoxb-...)")
        if not signing_secret and not app_token:
            missing.append("SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN for Socket Mode)")
        if missing:
            raise SettingsError("missing environment variables: " + "; ".join(missing))
        try:
            port = int(env.get("PORT", "3000"))
            threads = int(env.get("HTTP_THREADS", "32"))
        except ValueError as exc:
            raise SettingsError(f"PORT and HTTP_THREADS must be numbers ({exc})") from exc
        lease_s = _lease_seconds(env.get("INCIDENT_BOT_LEASE_S", "10"))
        slack_timeout_s = _slack_timeout(env.get("INCIDENT_BOT_SLACK_TIMEOUT_S", "10"))
        return cls(
            lease_s=lease_s,
            slack_timeout_s=slack_timeout_s,
            instance=env.get("INCIDENT_BOT_INSTANCE") or instance_name(),
            bot_token=bot_token,
            signing_secret=signing_secret,
            app_token=app_token,
            slack_api_url=env.get("SLACK_API_URL") or None,
            cloud_run_api_url=env.get("CLOUD_RUN_API_URL") or None,
            cloud_logging_api_url=env.get("CLOUD_LOGGING_API_URL") or None,
            cloud_monitoring_api_url=env.get("CLOUD_MONITORING_API_URL") or None,
            config_path=env.get("INCIDENT_BOT_CONFIG") or None,
            db_path=env.get("INCIDENT_BOT_DB", "incident-bot.db"),
            port=port,
            http_threads=threads,
            allow_example_people=env.get("INCIDENT_BOT_ALLOW_EXAMPLE_PEOPLE") == "1",
            alert_webhook_token=env.get("ALERT_WEBHOOK_TOKEN") or None,
            metrics_token=env.get("METRICS_TOKEN") or None,
            pagerduty_events_url=env.get("PAGERDUTY_EVENTS_URL") or None,
            pagerduty_api_url=env.get("PAGERDUTY_API_URL") or None,
        )

    def secrets(self) -> tuple[str, ...]:
        """Every secret this process was given, for redaction by value in every log line."""
        given = (self.bot_token, self.signing_secret, self.app_token, self.alert_webhook_token, self.metrics_token)
        return tuple(s for s in (*given, *url_secrets(self.db_path)) if s)


def url_secrets(url: str) -> tuple[str, ...]:
    """The password in a database URL (`postgresql://user:PASS@host/db`, or `?password=PASS`),
    as written and percent-decoded: a library may log either form."""
    if "://" not in url:
        return ()
    try:
        parts = urlsplit(url)
        found = [parts.password or ""] + parse_qs(parts.query).get("password", [])
        raw = url.split("://", 1)[1].split("@", 1)[0].partition(":")[2] if "@" in url else ""
    except ValueError:
        return ()
    found += [raw, unquote(raw)]
    return tuple(dict.fromkeys(s for s in found if s))


def config_secrets(config: Any, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The values of the environment variables the config names in a `*_env` key
    (`statuspage.api_key_env`, `pagerduty.routing_key_env`, ..., and any such key added later);
    a value holding several comma-separated secrets (a webhook secret being rotated) gives each too."""
    env = os.environ if env is None else env
    values = [env[name] for name in _env_keys(config) if env.get(name)]
    parts = [part.strip() for value in values if "," in value for part in value.split(",")]
    return tuple(dict.fromkeys(s for s in (*values, *parts) if s))


def _env_keys(value: Any) -> Iterator[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name.endswith("_env") and isinstance(item, str):
                yield item
            else:
                yield from _env_keys(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _env_keys(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _env_keys(item)


def _lease_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 60.0:
        raise SettingsError(f"INCIDENT_BOT_LEASE_S must be between 1 and 60 seconds, not {text!r}")
    return value


def _slack_timeout(text: str) -> int:
    value = int(text) if text.strip().isdecimal() else 0
    if not 1 <= value <= 60:
        raise SettingsError(
            f"INCIDENT_BOT_SLACK_TIMEOUT_S must be a whole number of seconds from 1 to 60, not {text!r}"
        )
    return value
