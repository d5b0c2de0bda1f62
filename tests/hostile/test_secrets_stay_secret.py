"""Tokens, the signing secret and the Statuspage key never reach a log line, an error or Slack,
however Slack, Google and Statuspage fail around them.

The bot runs with the production log set-up (JSON lines, bot/logs.py); every line it writes
while Slack refuses and errs, Statuspage answers 401 and 500, and Cloud Run and Cloud Logging
fail, is captured and searched, and so is every message the bot sent to Slack. The raw log
records are searched too, before any redaction: a secret must not get that far either.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.core import logs
from bot.pagerduty.client import signature
from bot.sandbox.monitoring import (
    alertmanager_alert,
    alertmanager_notification,
    cloud_monitoring_notification,
    send,
)
from bot.sandbox.pagerduty import PagerDutySandbox
from bot.sandbox.runner import BOT_TOKEN, SIGNING_SECRET, SandboxedBot
from bot.sandbox.statuspage import StatuspageSandbox
from tests.conftest import FAST_CONFIG

STATUSPAGE_KEY = "sp-live-0123456789abcdef0123456789abcdef"


class _Raw(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, _Raw]]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream, raw = io.StringIO(), _Raw()
    logs.configure("DEBUG", stream=stream, fmt="json")
    logs.register_secrets(BOT_TOKEN, SIGNING_SECRET, STATUSPAGE_KEY)
    root.addHandler(raw)
    try:
        yield stream, raw
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_no_secret_reaches_a_log_line_or_slack_while_everything_fails(
    captured: tuple[io.StringIO, _Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, raw = captured
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        monkeypatch.setenv("TEST_SECRET_SP_KEY", STATUSPAGE_KEY)
        config = FAST_CONFIG + (
            f"statuspage: {{page_id: pg1, api_key_env: TEST_SECRET_SP_KEY, api_url: '{page.api_url}'}}\n"
        )
        with SandboxedBot(config_text=config, preset="bad_deploy") as world:
            page.fail(times=3, status=500)
            world.slack.error("conversations.invite", "cant_invite", times=5)
            world.slack.fail("chat.update", status=500, times=5)
            world.command("declare p1 Checkout returns 500", user="U0PRIMARY")
            room = world.slack.wait_for(lambda: world.bot.store.get(1).war_room_id)
            page.fail(times=2, status=401)
            world.command("update --public identified Bad deploy", user="U0PRIMARY", channel=room)
            world.gcp.fail("logging", 500)
            world.gcp.fail("cloud_run", 403)
            world.command("diagnose", user="U0PRIMARY", channel=room)
            world.slack.wait_for_message(room, "Diagnosis ·", timeout=20)
            world.slack.error("chat.postMessage", "internal_error", times=2)
            world.command("rollback", user="U0PRIMARY", channel=room)
            world.slack.wait_for(lambda: page.calls)
            # The refused posts are logged when their sender meets them, which a loaded machine
            # can put after the status page's call: wait for them before looking.
            world.slack.wait_for(lambda: any("internal_error" in line for line in raw.lines), what="the refusal logged")
            sent_to_slack = json.dumps([c.params for c in world.slack.calls], ensure_ascii=False)

    written = stream.getvalue()
    # The failures happened and were logged: the search below looks where secrets would leak.
    for failure in ("answered 500", "403", "internal_error"):
        assert any(failure in line for line in raw.lines), f"no log line mentions {failure!r}"
    for secret in (BOT_TOKEN, SIGNING_SECRET, STATUSPAGE_KEY):
        assert secret not in written, f"{secret[:6]}… in a log line"
        assert not [line for line in raw.lines if secret in line], f"{secret[:6]}… in a raw log record"
        assert secret not in sent_to_slack, f"{secret[:6]}… sent to Slack"


@pytest.fixture
def production_logs() -> Iterator[tuple[io.StringIO, _Raw]]:
    """The production log set-up with nothing registered by the test: the bot registers its own."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream, raw = io.StringIO(), _Raw()
    logs.configure("DEBUG", stream=stream, fmt="json")
    root.addHandler(raw)
    try:
        yield stream, raw
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _fresh(name: str) -> str:
    # New values each run: a secret some earlier test registered must not make this one pass.
    return f"{name}-{uuid.uuid4().hex}"


ALERTS = """
alerts:
  default: {severity: P3, action: propose}
  rules:
    - {match: {policy: "Error rate*"}, severity: P2, action: declare}
"""


def _sweep(world: SandboxedBot, alert_token: str, metrics_token: str) -> None:
    """Every webhook path (each way of carrying the token, refusals too), /metrics, /health, and
    the store's paths: a declare, an alert's incident, an update, a resolve."""
    now = datetime.now(UTC)
    cm = f"{world.base_url}/alerts/cloud-monitoring"
    am = f"{world.base_url}/alerts/alertmanager"
    notification = cloud_monitoring_notification(
        incident_id="0.secret1", policy="Error rate > 5%", state="open", started_at=now, summary="Errors are up."
    )
    assert send(cm, notification, token=alert_token, auth="query").status == 202
    assert send(cm, notification, token=alert_token, auth="bearer").status == 202
    assert send(cm, b"{not json", token=alert_token).status == 400
    assert send(cm, notification, token=alert_token[:-1] + "x", auth="query").status == 401
    group = alertmanager_notification(
        [alertmanager_alert(alertname="DiskFull", fingerprint="f00d", starts_at=now, labels={"env": "prod"})]
    )
    assert send(am, group, token=alert_token).status == 202
    assert send(am, {"alerts": "nope"}, token=alert_token, auth="query").status == 422
    for path in ("/metrics", "/health"):
        request = urllib.request.Request(world.base_url + path, headers={"Authorization": f"Bearer {metrics_token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
    world.command("declare p1 Checkout returns 500", user="U0PRIMARY")
    room = world.slack.wait_for(lambda: world.bot.store.get(1).war_room_id)
    world.command("update identified Bad deploy", user="U0PRIMARY", channel=room)
    world.command("resolve Rolled back", user="U0PRIMARY", channel=room)
    world.slack.wait_for(lambda: world.bot.store.delivery_backlog()[0] == 0, timeout=10, what="every delivery sent")


def _libraries_log(*secrets: str) -> None:
    """Lines a library could write with a secret in them: a request URL with its query string, a
    connection string, an Authorization header in an odd shape."""
    for secret in secrets:
        logging.getLogger("waitress").warning("POST /alerts/cloud-monitoring?token=%s", secret)
        logging.getLogger("psycopg").error("connection to %s failed", f"postgresql://bot:{secret}@db/bot")
        logging.getLogger("urllib3").debug("header X-Api-Key: %s", secret)


def test_every_secret_the_bot_is_given_is_redacted_by_value_in_every_line(
    production_logs: tuple[io.StringIO, _Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, raw = production_logs
    alert_token, metrics_token, sp_key = _fresh("alert"), _fresh("metrics"), _fresh("sp")
    with StatuspageSandbox(page_id="pg1", api_key=sp_key) as page:
        monkeypatch.setenv("TEST_SECRET_SP_KEY_2", sp_key)
        config = (
            FAST_CONFIG
            + ALERTS
            + (f"statuspage: {{page_id: pg1, api_key_env: TEST_SECRET_SP_KEY_2, api_url: '{page.api_url}'}}\n")
        )
        with SandboxedBot(config_text=config, alert_token=alert_token, metrics_token=metrics_token) as world:
            _sweep(world, alert_token, metrics_token)
            sent_to_slack = json.dumps([c.params for c in world.slack.calls], ensure_ascii=False)
            swept = len(raw.lines)
            _libraries_log(alert_token, metrics_token, sp_key, BOT_TOKEN, SIGNING_SECRET)

    written = stream.getvalue()
    assert swept > 20 and "redacted" in written
    for secret in (alert_token, metrics_token, sp_key, BOT_TOKEN, SIGNING_SECRET):
        assert secret not in written, f"{secret[:8]}… in a log line"
        assert not [line for line in raw.lines[:swept] if secret in line], f"{secret[:8]}… in a raw log record"
        assert secret not in sent_to_slack, f"{secret[:8]}… sent to Slack"


def test_the_database_password_is_redacted_by_value(production_logs: tuple[io.StringIO, _Raw], pg_url: str) -> None:
    stream, raw = production_logs
    password = _fresh("dbpass")
    # The test server trusts local connections, so any password connects; the bot is given one.
    url = pg_url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)
    assert password in url
    with SandboxedBot(config_text=FAST_CONFIG, db_path=url) as world:
        world.command("declare p2 Search is slow", user="U0PRIMARY")
        world.slack.wait_for_dm("U0PRIMARY", "You are paged")
        swept = len(raw.lines)
        _libraries_log(password)
        logging.getLogger("bot").warning("store at %s", url)

    written = stream.getvalue()
    assert password not in written, "the database password in a log line"
    assert not [line for line in raw.lines[:swept] if password in line]
    assert "postgresql://postgres:[redacted]@" in written


def test_pagerduty_secrets_are_redacted_by_value_in_every_line(
    production_logs: tuple[io.StringIO, _Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, raw = production_logs
    key, old, new, token = _fresh("pdkey"), _fresh("pdold"), _fresh("pdnew"), _fresh("pdtoken")
    monkeypatch.setenv("TEST_SECRET_PD_KEY", key)
    monkeypatch.setenv("TEST_SECRET_PD_HOOK", f"{old},{new}")
    monkeypatch.setenv("TEST_SECRET_PD_TOKEN", token)
    config = FAST_CONFIG + (
        "pagerduty: {routing_key_env: TEST_SECRET_PD_KEY, webhook_secret_env: TEST_SECRET_PD_HOOK,"
        " api_token_env: TEST_SECRET_PD_TOKEN}\n"
    )
    with (
        PagerDutySandbox(routing_keys=(key,), api_token=token) as pd,
        SandboxedBot(config_text=config, pagerduty=pd) as world,
    ):
        pd.subscribe(world.pagerduty_webhook_url, (new,))
        pd.fail(times=1, status=503)  # retried, logged with the error
        world.command("declare p1 Checkout returns 500", user="U0PRIMARY")
        world.slack.wait_for(lambda: pd.alerts, timeout=10, what="the trigger accepted")
        body = b'{"event": {"event_type": "incident.acknowledged"}}'
        for header in (None, signature(body, "wrong"), signature(body, old)):
            request = urllib.request.Request(world.pagerduty_webhook_url, data=body, method="POST")
            if header:
                request.add_header("X-PagerDuty-Signature", header)
            with contextlib.suppress(urllib.error.HTTPError):
                urllib.request.urlopen(request, timeout=5).close()
        pd.acknowledge(pd.alerts[0].dedup_key, "PUNKNOWN")  # a REST read with the token, 404
        world.slack.wait_for(lambda: world.bot.store.get(1).acknowledged_at)
        pd.fail(times=1, status=400)  # refused: the war room is told, with the error
        world.command("resolve INC-1 Rolled back", user="U0PRIMARY")
        world.slack.wait_for(lambda: pd.calls and pd.calls[-1].status == 400)
        world.slack.wait_for(lambda: any("refused" in line for line in raw.lines))
        sent_to_slack = json.dumps([c.params for c in world.slack.calls], ensure_ascii=False)
        swept = len(raw.lines)
        _libraries_log(key, old, new, token)

    written = stream.getvalue()
    assert any("refused" in line for line in raw.lines[:swept])
    for secret in (key, old, new, token):
        assert secret not in written, f"{secret[:8]}… in a log line"
        assert not [line for line in raw.lines[:swept] if secret in line], f"{secret[:8]}… in a raw log record"
        assert secret not in sent_to_slack, f"{secret[:8]}… sent to Slack"
