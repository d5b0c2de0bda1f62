"""The bot running in-process against the sandbox: what the demo and the end-to-end tests drive.

The bot is the real thing (`IncidentBot` under waitress on a loopback port); Slack is the
sandbox's Web API emulator, and "Slack the platform" is `SlackPlatform`, which sends the bot
signed slash commands and button clicks over HTTP.
"""

from __future__ import annotations

import os
import tempfile
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot import config as config_module
from bot.app.runtime import ALERT_QUEUE, IncidentBot
from bot.app.server import make_server
from bot.app.settings import Settings
from bot.domain.policy import ServiceConfig
from bot.oncall.directory import RETRY_S
from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.pagerduty import PagerDutySandbox
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.constants import APP_TOKENS
from bot.sandbox.slack.platform import SlackPlatform
from bot.sandbox.slack.socket_platform import SocketModePlatform

BOT_TOKEN = "xoxb-sandbox"
SIGNING_SECRET = "sandbox-signing-secret"
ALERT_TOKEN = "sandbox-alert-token"
APP_TOKEN = next(iter(APP_TOKENS))


class SandboxedBot:
    def __init__(
        self,
        config_text: str | None = None,
        db_path: str | None = None,
        slack: SlackSandbox | None = None,
        preset: str = "healthy",
        setup_retry_s: float = 60.0,
        wait_ready: bool = True,
        slack_retry_s: float = 0.2,
        slack_timeout_s: int = 10,
        socket_mode: bool = False,
        alert_token: str = ALERT_TOKEN,
        metrics_token: str | None = None,
        rate_limits: bool = True,
        alert_queue: int | None = None,
        pagerduty: PagerDutySandbox | None = None,
        lookup_retry_s: float = RETRY_S,
    ) -> None:
        """`wait_ready=False` returns from `start` once the port is open, while the bot is still
        waiting for Slack (a test of start-up against a slow or down Slack). `rate_limits=False`:
        a Slack that answers bursts beyond its published limits (for tests that need them)."""
        self.alert_token = alert_token
        # PagerDuty's Events API and webhooks, when the config has a `pagerduty:` section (the
        # routing key and webhook secret are read from the environment the config names).
        self.pagerduty = pagerduty
        self.metrics_token = metrics_token
        self._tmp = tempfile.TemporaryDirectory(prefix="incident-bot-")
        self.db_path = db_path or os.path.join(self._tmp.name, "incident-bot.db")
        self.config_text = config_text
        # Exactly the scopes the manifest grants: a call the manifest forgot fails like in Slack.
        self.slack = slack or SlackSandbox(scopes=manifest_scopes(), rate_limits=rate_limits)
        if slack is None:
            self.slack.home_tab_enabled = manifest_home_tab()
        self._owns_slack = slack is None
        self.gcp = GcpSandbox()
        self.preset = preset
        self.setup_retry_s = setup_retry_s
        self.wait_ready = wait_ready
        self.slack_retry_s = slack_retry_s
        self.slack_timeout_s = slack_timeout_s
        self.rate_limits = rate_limits
        self.alert_queue = alert_queue
        # Slack's requests over the sandbox's Socket Mode WebSocket (SocketModePlatform), not HTTP.
        self.socket_mode = socket_mode
        # How soon a background look-up of emails and user groups that failed is tried again.
        self.lookup_retry_s = lookup_retry_s
        self.bot: IncidentBot | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> SandboxedBot:
        self.slack.start()
        self.gcp.start()
        self.gcp.use(self.preset)
        config = (
            config_module.parse(self.config_text, source="sandbox config")
            if self.config_text
            else config_module.load(None)
        )
        # Diagnose and roll back act on the emulated service, whatever the config names.
        config = replace(
            config,
            service=ServiceConfig(self.gcp.project, self.gcp.region, self.gcp.name, self.gcp.health_url),
        )
        settings = Settings(
            bot_token=BOT_TOKEN,
            signing_secret=None if self.socket_mode else SIGNING_SECRET,
            app_token=APP_TOKEN if self.socket_mode else None,
            slack_api_url=self.slack.api_url,
            cloud_run_api_url=self.gcp.cloud_run_url,
            cloud_logging_api_url=self.gcp.logging_url,
            cloud_monitoring_api_url=self.gcp.monitoring.url,
            db_path=self.db_path,
            port=0,
            allow_example_people=True,
            alert_webhook_token=self.alert_token,
            metrics_token=self.metrics_token,
            pagerduty_events_url=self.pagerduty.events_url if self.pagerduty else None,
            pagerduty_api_url=self.pagerduty.api_url if self.pagerduty else None,
        )
        self.bot = IncidentBot(
            settings,
            config,
            setup_retry_s=self.setup_retry_s,
            slack_retry_s=self.slack_retry_s,
            slack_timeout_s=self.slack_timeout_s,
            slack_pacing=self.rate_limits,
            alert_queue=self.alert_queue or ALERT_QUEUE,
            lookup_retry_s=self.lookup_retry_s,
        )
        # As `incident-bot serve` does: the port first, then whatever needs Slack.
        self._server = make_server(self.bot, host="127.0.0.1", port=0, threads=32, slack_events=not self.socket_mode)
        self._thread = threading.Thread(target=self._server.run, name="bot-http", daemon=True)
        self._thread.start()
        self.platform: SlackPlatform = (
            SocketModePlatform(self.slack) if self.socket_mode else SlackPlatform(self.url, SIGNING_SECRET, self.slack)
        )
        if self.wait_ready:
            self.bot.start()
        else:
            self.bot.start_in_background()
        return self

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pagerduty_webhook_url(self) -> str:
        return f"{self.base_url}/pagerduty/webhook"

    def command(self, text: str, **kwargs: Any) -> Any:
        return self.platform.command(text, **kwargs)

    def click(self, *args: Any, **kwargs: Any) -> Any:
        return self.platform.click(*args, **kwargs)

    def stop(self) -> None:
        if self._server is not None:
            # Finish in-flight requests, then close every socket from inside the server's own
            # loop: closing them from this thread races the loop's select() (EBADF).
            server = self._server
            server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)

            def close_all() -> None:
                for channel in list(server._map.values()):
                    if channel is not server.trigger and channel is not server:
                        channel.close()
                server.close()

            server.trigger.pull_trigger(close_all)
            if self._thread is not None:
                self._thread.join(timeout=5)
        if self.bot is not None:
            self.bot.stop()
        if self._owns_slack:
            self.slack.stop()
        self.gcp.stop()
        self._tmp.cleanup()

    def __enter__(self) -> SandboxedBot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_config(text: str, directory: str | Path) -> str:
    path = Path(directory) / "incident-bot.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def manifest_home_tab() -> bool:
    """Whether manifest.yaml enables the Home tab (views.publish answers not_enabled without it)."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "manifest.yaml"
    if not path.exists():
        return True
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return bool(((data.get("features") or {}).get("app_home") or {}).get("home_tab_enabled"))


def manifest_scopes() -> frozenset[str]:
    """The bot scopes manifest.yaml grants (the sandbox's defaults when run outside a checkout)."""
    import yaml

    from bot.sandbox.slack.constants import DEFAULT_SCOPES

    path = Path(__file__).resolve().parents[2] / "manifest.yaml"
    if not path.exists():
        return DEFAULT_SCOPES
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return frozenset(data["oauth_config"]["scopes"]["bot"])
