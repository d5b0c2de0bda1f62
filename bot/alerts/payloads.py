"""The monitoring systems' payloads read into `Alert`s: Cloud Monitoring's webhook notification
(schema version 1.2) and Prometheus Alertmanager's webhook (version 4). Anything that is not the
documented shape is a `PayloadError` naming the field, answered 400."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.core.text import from_form
from bot.domain.alerts import ALERTMANAGER, CLOUD_MONITORING, Alert

TEXT_MAX = 3000  # a summary longer than a Slack section is of no use to anyone


_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not set" for endsAt


class PayloadError(Exception):
    """The body is JSON but not the notification it claims to be; the message says what is missing."""


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
