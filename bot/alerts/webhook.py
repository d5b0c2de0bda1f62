"""The alert webhooks: `POST /alerts/cloud-monitoring` and `POST /alerts/alertmanager`.

Cloud Monitoring's webhook notification (schema version 1.2) and Prometheus Alertmanager's
webhook (version 4) are authenticated with the shared `ALERT_WEBHOOK_TOKEN` (HTTP basic auth
password, bearer token, or `token` query parameter), parsed into `Alert`s, routed by the
config's `alerts:` rules, recorded, and answered 202 at once; Slack work runs afterwards
(`bot.alerts.intake`); the payloads are read by `bot.alerts.payloads`. Without the token or the config section the endpoints are off (404).

While the alert intake's queue is full (a flood), a notification is answered 503 with
`Retry-After` and nothing of it is recorded: both senders deliver again, so nothing is lost and
the bot holds no unbounded work. Cloud Monitoring's "Test connection" notification (`version:
"test"`) is answered 200 and logged, nothing more.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bot.alerts import intake as alert_incidents
from bot.alerts.payloads import PayloadError, parse
from bot.context import Context
from bot.domain.alerts import ALERTMANAGER, CLOUD_MONITORING, route

log = logging.getLogger(__name__)

PATHS = {"/alerts/cloud-monitoring": CLOUD_MONITORING, "/alerts/alertmanager": ALERTMANAGER}
MAX_BODY = 1_048_576
# What a full intake asks the sender to wait before delivering again.
RETRY_AFTER_S = 30

StartResponse = Callable[..., Any]


def webhook(ctx: Context, token: str | None) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app for the alert paths (the server sends only those here)."""
    if token and ctx.config.alerts is None:
        log.warning("ALERT_WEBHOOK_TOKEN is set but the config has no `alerts:` section: alert webhooks are off")
    if not token and ctx.config.alerts is not None:
        log.warning("the config has an `alerts:` section but ALERT_WEBHOOK_TOKEN is unset: alert webhooks are off")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        source = PATHS[environ.get("PATH_INFO", "")]
        rules = ctx.config.alerts
        if rules is None or not token:
            return _answer(start_response, 404, {"error": "alert webhooks are not enabled"})
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, 405, {"error": "use POST"}, [("Allow", "POST")])
        if not authorized(environ, token):
            # Nothing about why: a prober learns only that a token is needed.
            challenge = [("WWW-Authenticate", 'Basic realm="incident-bot alerts"')]
            return _answer(start_response, 401, {"error": "unauthorized"}, challenge)
        body = _read_body(environ)
        if body is None:
            return _answer(start_response, 413, {"error": f"the body is over {MAX_BODY:,} bytes"})
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _answer(start_response, 400, {"error": "the body is not valid JSON"})
        if source == CLOUD_MONITORING and isinstance(payload, dict) and payload.get("version") == "test":
            incident = payload.get("incident")
            policy = incident.get("policy_name") if isinstance(incident, dict) else None
            log.info("Cloud Monitoring test notification (policy %r): answered, nothing made", policy)
            return _answer(start_response, 200, {"test": True})
        if not ctx.alert_work.has_room():
            log.warning("the alert intake is full (%s queued): %s asked to retry", ctx.alert_work.queued, source)
            retry = [("Retry-After", str(RETRY_AFTER_S))]
            return _answer(start_response, 503, {"error": "busy; deliver again later"}, retry)
        try:
            alerts = parse(source, payload, now=ctx.now())
        except PayloadError as exc:
            log.info("refused a %s notification: %s", source, exc)
            return _answer(start_response, 422, {"error": str(exc)})
        routed = [(alert, route(alert, rules)) for alert in alerts]
        try:
            receipts = alert_incidents.receive(ctx, routed)
        except Exception:  # noqa: BLE001 - not recorded: a 503 makes the sender deliver it again
            log.exception("could not record a %s notification", source)
            return _answer(start_response, 503, {"error": "not recorded; try again"})
        outcomes = [r.outcome for r in receipts]
        log.info("%s: %s", source, ", ".join(f"{a.policy!r} {o}" for (a, _), o in zip(routed, outcomes, strict=True)))
        return _answer(start_response, 202, {"accepted": len(alerts), "outcomes": outcomes})

    return app


def authorized(environ: dict[str, Any], token: str) -> bool:
    """Whether the request carries the token: as the basic-auth password (Cloud Monitoring's
    `webhook_basicauth`, Alertmanager's `basic_auth`), a bearer token (Alertmanager's
    `authorization`), or the `token` query parameter (Cloud Monitoring's `webhook_tokenauth`)."""
    offered: list[str] = []
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
    if scheme.lower() == "bearer":
        offered.append(credentials.strip())
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        offered.append(decoded.partition(":")[2])
    offered += parse_qs(str(environ.get("QUERY_STRING") or "")).get("token", [])
    expected = token.encode()
    # Every offer is compared, in constant time, so timing says nothing about which one was close.
    results = [hmac.compare_digest(candidate.encode(), expected) for candidate in offered if candidate]
    return any(results)


def _read_body(environ: dict[str, Any]) -> bytes | None:
    """The body, or None when it is over the limit (told by Content-Length, or found reading)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    stream = environ["wsgi.input"]
    body: bytes = stream.read(min(length, MAX_BODY + 1) if length else MAX_BODY + 1)
    return body if len(body) <= MAX_BODY else None


def _answer(
    start_response: StartResponse, status: int, body: dict[str, Any], extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    reasons = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    reasons |= {405: "Method Not Allowed", 413: "Content Too Large", 422: "Unprocessable Content"}
    reasons |= {503: "Service Unavailable"}
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(extra or [])]
    start_response(f"{status} {reasons[status]}", headers)
    return [data]


# -- payloads ------------------------------------------------------------------------------
