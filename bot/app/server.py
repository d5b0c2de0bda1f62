"""The HTTP face of the bot: `POST /slack/events` through Bolt, `POST /pagerduty/webhook`, `GET /health`,
`GET /metrics`, under waitress.

The health endpoint answers at `/health` and `/healthz` (Cloud Run reserves some paths ending
in `z`): 200 with JSON once the bot is ready, 503 with the reason until then. With
`METRICS_TOKEN` set, `/metrics` and the detailed health need `Authorization: Bearer <token>`;
without that header `/health` says only whether the bot is ready (what a probe needs). In Socket Mode
the same server runs for the health endpoint alone: Slack's requests arrive over the socket,
and with no signing secret an HTTP `/slack/events` would accept unsigned requests.

waitress is a production WSGI server in pure Python: threaded, no fork, so the scheduler that
lives in this process is not duplicated, and it runs the same on a laptop and on Cloud Run.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.alerts import webhook as alerts
from bot.app import observability
from bot.app.runtime import IncidentBot
from bot.paging import acks as pagerduty_acks

log = logging.getLogger(__name__)

MAX_BODY = 1_048_576  # Slack payloads are a few KB; refuse megabytes before parsing them
HEALTH_PATHS = ("/health", "/healthz")


def _json(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def bearer_ok(environ: dict[str, Any], token: str | None) -> bool:
    """No token configured, or the request carries it as `Authorization: Bearer <token>`."""
    if not token:
        return True
    scheme, _, offered = str(environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(offered.strip().encode(), token.encode())


def wsgi_app(bot: IncidentBot, slack_events: bool = True) -> Callable[..., Iterable[bytes]]:
    slack_handler = SlackRequestHandler(bot.bolt, path="/slack/events")
    alert_webhook = alerts.webhook(bot.ctx, bot.settings.alert_webhook_token)
    pagerduty_webhook = pagerduty_acks.webhook(bot.ctx, bot.pagerduty_secrets)
    metrics_token = bot.settings.metrics_token

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in HEALTH_PATHS:
            health = bot.health()
            status = "200 OK" if health["status"] == "ok" else "503 Service Unavailable"
            if not bearer_ok(environ, metrics_token):
                # Ready or not, and nothing else: the counts, the lease holder's host and pid
                # and the backlog are for whoever holds the token.
                return _json(start_response, status, {"status": health["status"]})
            return _json(start_response, status, health)
        if environ.get("PATH_INFO") == "/metrics" and environ.get("REQUEST_METHOD") == "GET":
            if not bearer_ok(environ, metrics_token):
                headers = [("WWW-Authenticate", 'Bearer realm="incident-bot metrics"')]
                body = b'{"error": "unauthorized"}'
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers],
                )
                return [body]
            body = observability.exposition(bot.metrics)
            start_response("200 OK", [("Content-Type", observability.CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("PATH_INFO") in alerts.PATHS:
            # Recorded in the store even before Slack answers; the Slack side follows once it does.
            return alert_webhook(environ, start_response)
        if environ.get("PATH_INFO") == pagerduty_acks.PATH:
            if not bot.ready:
                return _json(start_response, "503 Service Unavailable", {"error": bot.not_ready})
            return pagerduty_webhook(environ, start_response)
        if not slack_events:
            return _json(start_response, "404 Not Found", {"error": "not found (Socket Mode: only /health)"})
        if not bot.ready and environ.get("PATH_INFO") == "/slack/events":
            # Slack shows the person an error at once; better than a command that hangs on Slack.
            return _json(start_response, "503 Service Unavailable", {"error": bot.not_ready})
        try:
            return slack_handler(environ, start_response)
        except Exception as exc:  # noqa: BLE001 - a malformed (but signed) payload can break Bolt's own parsing
            # One line, no traceback: anyone holding a signature could otherwise fill the log.
            log.warning(
                "refused a malformed request to %s (%s: %.200s)", environ.get("PATH_INFO"), type(exc).__name__, exc
            )
            body = b'{"error": "malformed request"}'
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            start_response("400 Bad Request", headers, sys.exc_info())
            return [body]

    return app


def make_server(
    bot: IncidentBot, host: str = "0.0.0.0", port: int = 3000, threads: int = 32, slack_events: bool = True
) -> Any:
    """A waitress server (not yet running): `.run()` serves, `.close()` stops, `.effective_port`.

    `slack_events=False` (Socket Mode) serves the health endpoint only. Listening beyond the
    loopback without `METRICS_TOKEN` is warned about once, here, at start-up.
    """
    if not bot.settings.metrics_token and not _loopback(host):
        log.warning(
            "METRICS_TOKEN is unset and the bot listens on %s: GET /metrics and the detailed GET /health "
            "(open incidents, the lease holder's host and pid, the delivery backlog) are open to anyone "
            "who can reach it. Set METRICS_TOKEN to require `Authorization: Bearer <token>`.",
            host,
        )
    return create_server(
        wsgi_app(bot, slack_events),
        host=host,
        port=port,
        threads=threads,
        max_request_body_size=MAX_BODY,
        ident="incident-bot",
        clear_untrusted_proxy_headers=True,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
