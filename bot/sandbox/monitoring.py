"""The monitoring systems' side of the alert webhooks, for the demo and the tests.

`cloud_monitoring_notification` builds what Cloud Monitoring's webhook notification channel
POSTs (schema version 1.2), and `alertmanager_notification` what Alertmanager's
`webhook_config` POSTs (version 4), field for field; `send` delivers one over HTTP the way
they do (basic auth for Cloud Monitoring's `webhook_basicauth`, a bearer token for
Alertmanager's `authorization`).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PROJECT = "demo-project"


@dataclass(frozen=True)
class Delivery:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def cloud_monitoring_notification(
    *,
    incident_id: str,
    policy: str,
    state: str = "open",
    started_at: datetime,
    ended_at: datetime | None = None,
    summary: str = "",
    condition: str = "",
    service: str = "tai-autonomics",
    user_labels: dict[str, str] | None = None,
    severity: str | None = "Critical",
    project: str = PROJECT,
) -> dict[str, Any]:
    """A Cloud Monitoring incident notification for a Cloud Run service, as the channel sends it."""
    condition = condition or policy
    incident: dict[str, Any] = {
        "incident_id": incident_id,
        "scoping_project_id": project,
        "scoping_project_number": 123456789012,
        "url": f"https://console.cloud.google.com/monitoring/alerting/incidents/{incident_id}?project={project}",
        "started_at": int(started_at.timestamp()),
        "ended_at": int(ended_at.timestamp()) if ended_at else None,
        "state": state,
        "summary": summary,
        "apigee_url": "",
        "observed_value": "0.124",
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": project,
                "service_name": service,
                "location": "us-central1",
                "revision_name": f"{service}-00043-xyz",
                "configuration_name": service,
            },
        },
        "resource_type_display_name": "Cloud Run Revision",
        "resource_id": "",
        "resource_display_name": service,
        "resource_name": f"{project} Cloud Run Revision labels {{service_name={service}}}",
        "metric": {
            "type": "run.googleapis.com/request_count",
            "displayName": "Request Count",
            "labels": {"response_code_class": "5xx"},
        },
        "metadata": {"system_labels": {}, "user_labels": dict(user_labels or {})},
        "policy_name": policy,
        "policy_user_labels": {"team": "payments"},
        "documentation": {
            "content": "See the incident runbook, scenario 2.",
            "mime_type": "text/markdown",
            "subject": f"[ALERT] {policy}",
            "links": [],
        },
        "condition": {
            "name": f"projects/{project}/alertPolicies/1234567890/conditions/987654321",
            "displayName": condition,
            "conditionThreshold": {
                "filter": 'resource.type = "cloud_run_revision" AND metric.type = "run.googleapis.com/request_count"',
                "comparison": "COMPARISON_GT",
                "thresholdValue": 0.05,
                "duration": "120s",
                "trigger": {"count": 1},
            },
        },
        "condition_name": condition,
        "threshold_value": "0.05",
    }
    if severity is not None:
        incident["severity"] = severity
    return {"incident": incident, "version": "1.2"}


def cloud_monitoring_test_notification() -> dict[str, Any]:
    """What Cloud Monitoring sends when a person presses "Test connection" on a webhook channel:
    `version: "test"`, placeholder values and `started_at: 0`."""
    return {
        "incident": {
            "incident_id": "12345",
            "scoping_project_id": "12345",
            "scoping_project_number": 12345,
            "url": "http://www.example.com",
            "started_at": 0,
            "ended_at": 0,
            "state": "OPEN",
            "summary": "Test Incident",
            "apigee_url": "http://www.example.com",
            "observed_value": "1.0",
            "resource": {"type": "example_resource", "labels": {"example": "label"}},
            "resource_type_display_name": "Example Resource Type",
            "resource_id": "12345",
            "resource_display_name": "Example Resource",
            "resource_name": "projects/12345/example_resources/12345",
            "metric": {
                "type": "test.googleapis.com/metric",
                "displayName": "Test Metric",
                "labels": {"example": "label"},
            },
            "metadata": {"system_labels": {"example": "label"}, "user_labels": {"example": "label"}},
            "policy_name": "projects/12345/alertPolicies/12345",
            "policy_user_labels": {"example": "label"},
            "documentation": "Test documentation",
            "condition": {
                "name": "projects/12345/alertPolicies/12345/conditions/12345",
                "displayName": "Example condition",
            },
            "condition_name": "Example condition",
            "threshold_value": "0.5",
        },
        "version": "test",
    }


def alertmanager_alert(
    *,
    alertname: str,
    fingerprint: str,
    starts_at: datetime,
    ends_at: datetime | None = None,
    labels: dict[str, str] | None = None,
    summary: str = "",
    description: str = "",
) -> dict[str, Any]:
    """One alert of an Alertmanager notification: firing while `ends_at` is None."""
    return {
        "status": "resolved" if ends_at else "firing",
        "labels": {"alertname": alertname, **(labels or {})},
        "annotations": {k: v for k, v in (("summary", summary), ("description", description)) if v},
        "startsAt": _rfc3339(starts_at),
        "endsAt": _rfc3339(ends_at) if ends_at else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
        "fingerprint": fingerprint,
    }


def alertmanager_notification(alerts: list[dict[str, Any]], receiver: str = "incident-bot") -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for a group of alerts sharing their alertname."""
    alertname = alerts[0]["labels"]["alertname"]
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {
        "receiver": receiver,
        "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": {"alertname": alertname},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
    }


def send(
    url: str,
    payload: dict[str, Any] | bytes,
    *,
    token: str | None = None,
    auth: str = "basic",
    timeout: float = 10.0,
) -> Delivery:
    """POST a notification; `auth` is basic, bearer or query (the token as `?token=`)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Google-Alerts"}
    if token is not None and auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"incident-bot:{token}".encode()).decode()
    elif token is not None and auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None and auth == "query":
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"token": token})
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Delivery(response.status, _json(response.read()), dict(response.headers.items()))
    except urllib.error.HTTPError as exc:
        return Delivery(exc.code, _json(exc.read()), dict(exc.headers.items()))


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {"raw": data[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
