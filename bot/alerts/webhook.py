"""The alert webhooks: `POST /alerts/cloud-monitoring` and `POST /alerts/alertmanager`.

Cloud Monitoring's webhook notification (schema version 1.2) and Prometheus Alertmanager's
webhook (version 4) are authenticated with the shared `ALERT_WEBHOOK_TOKEN` (HTTP basic auth
password, bearer token, or `token` query parameter), parsed into `Alert`s, routed by the
config's `alerts:` rules, recorded, and answered 202 at once; Slack work runs afterwards
(`bot/alert_incidents.py`). Without the token or the config section the endpoints are off (404).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from bot.alerts import intake as alert_incidents
from bot.context import Context
from bot.core.text import from_form
from bot.domain.alerts import ALERTMANAGER, CLOUD_MONITORING, Alert, route

log = logging.getLogger(__name__)

PATHS = {"/alerts/cloud-monitoring": CLOUD_MONITORING, "/alerts/alertmanager": ALERTMANAGER}
MAX_BODY = 1_048_576
TEXT_MAX = 3000  # a summary longer than a Slack section is of no use to anyone
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not set" for endsAt

StartResponse = Callable[..., Any]


class PayloadError(Exception):
    """The body is JSON but not the notification it claims to be; the message says what is missing."""


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
    reasons = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    reasons |= {405: "Method Not Allowed", 413: "Content Too Large", 422: "Unprocessable Content"}
    reasons |= {503: "Service Unavailable"}
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(extra or [])]
    start_response(f"{status} {reasons[status]}", headers)
    return [data]


# -- payloads ------------------------------------------------------------------------------


def parse(source: str, payload: Any, now: datetime) -> list[Alert]:
    """The alerts in a notification; PayloadError names the first field that is missing or wrong."""
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    if source == CLOUD_MONITORING:
        return [cloud_monitoring_alert(payload)]
    return alertmanager_alerts(payload, now)


def cloud_monitoring_alert(payload: dict[str, Any]) -> Alert:
    """Cloud Monitoring's webhook notification, schema version 1.2: one incident per notification."""
    incident = payload.get("incident")
    if not isinstance(incident, dict):
        raise PayloadError("`incident` is missing (is this a Cloud Monitoring webhook notification?)")
    incident_id = _required_text(incident, "incident_id", "incident.")
    policy = _required_text(incident, "policy_name", "incident.")
    state = _required_text(incident, "state", "incident.").lower()
    if state not in ("open", "closed"):
        raise PayloadError(f"`incident.state` must be open or closed, not {state[:20]!r}")
    started_at = _epoch(incident.get("started_at"), "incident.started_at", required=True)
    assert started_at is not None
    ended_at = _epoch(incident.get("ended_at"), "incident.ended_at", required=False)
    labels: dict[str, str] = {}
    resource, metric, metadata = (_mapping(incident.get(k)) for k in ("resource", "metric", "metadata"))
    for source in (
        resource.get("labels"),
        metric.get("labels"),
        metadata.get("system_labels"),
        metadata.get("user_labels"),
        incident.get("policy_user_labels"),
    ):
        labels.update(_labels(source))
    project = str(incident.get("scoping_project_id") or _mapping(resource.get("labels")).get("project_id") or "")
    severity = incident.get("severity")
    if isinstance(severity, str) and severity:
        labels.setdefault("severity", severity)  # so a rule can say `labels: {severity: Critical}`
    return Alert(
        source=CLOUD_MONITORING,
        alert_id=incident_id,
        policy=policy,
        state=state,
        started_at=started_at,
        ended_at=ended_at if state == "closed" else None,
        summary=_text(incident.get("summary")),
        url=_text(incident.get("url")) or None,
        labels=labels,
        group_key=f"{project}/{policy}",
        condition=_text(incident.get("condition_name")),
        source_severity=str(severity) if isinstance(severity, str) and severity else None,
    )


def alertmanager_alerts(payload: dict[str, Any], now: datetime) -> list[Alert]:
    """Alertmanager's webhook, version 4: a group of alerts, each firing or resolved."""
    raw_alerts = payload.get("alerts")
    if not isinstance(raw_alerts, list) or not raw_alerts:
        raise PayloadError("`alerts` must be a non-empty list (is this an Alertmanager webhook?)")
    group_key = _text(payload.get("groupKey"))
    external = _text(payload.get("externalURL"))
    alerts = []
    for i, raw in enumerate(raw_alerts):
        where = f"alerts[{i}]."
        if not isinstance(raw, dict):
            raise PayloadError(f"`alerts[{i}]` must be an object")
        labels = _labels(raw.get("labels"))
        if not labels.get("alertname"):
            raise PayloadError(f"`{where}labels.alertname` is missing")
        fingerprint = _required_text(raw, "fingerprint", where)
        status = _required_text(raw, "status", where).lower()
        if status not in ("firing", "resolved"):
            raise PayloadError(f"`{where}status` must be firing or resolved, not {status[:20]!r}")
        started_at = _rfc3339(raw.get("startsAt"), f"{where}startsAt")
        ends = raw.get("endsAt")
        ended_at = _rfc3339(ends, f"{where}endsAt") if ends and ends != _ZERO_TIME else None
        annotations = _labels(raw.get("annotations"))
        alerts.append(
            Alert(
                source=ALERTMANAGER,
                alert_id=fingerprint,
                policy=labels["alertname"],
                state="open" if status == "firing" else "closed",
                started_at=started_at,
                ended_at=(ended_at or now) if status == "resolved" else None,
                summary=_text(annotations.get("summary") or annotations.get("description")),
                url=_text(raw.get("generatorURL")) or external or None,
                labels=labels,
                group_key=group_key,
                condition=_text(annotations.get("description")),
                source_severity=labels.get("severity"),
            )
        )
    return alerts


def _required_text(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise PayloadError(f"`{where}{key}` is missing")
    return from_form(str(value)).strip()[:500]


def _text(value: Any) -> str:
    # Text from outside Slack enters like a form's: as typed, so nothing in it can pose as an entity.
    return from_form(str(value)).strip()[:TEXT_MAX] if isinstance(value, (str, int, float)) and value != "" else ""


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {
        from_form(str(k))[:200]: from_form(str(v))[:500]
        for k, v in value.items()
        if isinstance(v, (str, int, float, bool))
    }


def _epoch(value: Any, key: str, *, required: bool) -> datetime | None:
    """Cloud Monitoring's times are seconds since the epoch (`null` while an incident is open)."""
    if value is None or value == "":
        if required:
            raise PayloadError(f"`{key}` is missing")
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise PayloadError(f"`{key}` must be seconds since the epoch, not {str(value)[:30]!r}") from exc


def _rfc3339(value: Any, key: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise PayloadError(f"`{key}` is missing")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PayloadError(f"`{key}` must be an RFC 3339 time, not {value[:40]!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
