"""The Google client types turned into the domain's small frozen records (`bot.domain.service`),
and Google's errors into a `ChangeError` whose reason says what the next step is."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.domain.service import (
    ChangeError,
    HttpInfo,
    LogRecord,
    RevisionState,
    ServiceState,
    TrafficShare,
    short_revision,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def change_error(exc: Exception, *, sent: bool) -> ChangeError:
    """A Google client error as a ChangeError whose reason says what the next step is."""
    from google.api_core import exceptions as gexc

    status = ""
    response = getattr(exc, "response", None)
    try:
        status = str(response.json().get("error", {}).get("status") or "") if response is not None else ""
    except Exception:  # noqa: BLE001 - a body that is not JSON: go by the exception class
        status = ""
    message = str(getattr(exc, "message", "") or exc).splitlines()[0]
    # REST errors start with the request line ("PATCH https://…: "): the reader needs the reason.
    message = re.sub(r"^[A-Z]+ https?://\S+: ", "", message)[:300]
    if isinstance(exc, (gexc.PermissionDenied, gexc.Forbidden, gexc.Unauthenticated, gexc.Unauthorized)):
        reason = "permission_denied"
    elif isinstance(exc, gexc.NotFound):
        reason = "not_found"
    elif isinstance(exc, gexc.FailedPrecondition) or status == "FAILED_PRECONDITION":
        reason = "failed_precondition"
    elif isinstance(exc, (gexc.Conflict, gexc.Aborted)):
        reason = "conflict"
    elif isinstance(exc, (gexc.InvalidArgument, gexc.BadRequest)):
        reason = "invalid"
    elif isinstance(exc, (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError, OSError)):
        reason = "unavailable"
    else:
        reason = "error"
    return ChangeError(reason, message, sent=sent)


def service_state(service: Any) -> ServiceState:
    from google.cloud import run_v2

    latest_kind = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    latest_ready = short_revision(service.latest_ready_revision)
    traffic = tuple(
        TrafficShare(
            # A LATEST allocation may come without a revision name: it is the latest ready.
            revision=short_revision(status.revision) or latest_ready,
            percent=status.percent,
            tag=status.tag,
            latest=status.type_ == latest_kind,
        )
        for status in service.traffic_statuses
    )
    containers = list(service.template.containers)
    max_instances = service.template.scaling.max_instance_count
    ready, message, _ = _ready(service.terminal_condition)
    return ServiceState(
        name=service.name,
        url=service.uri or (service.urls[0] if service.urls else ""),
        ready=ready,
        ready_message=message,
        latest_created_revision=short_revision(service.latest_created_revision),
        latest_ready_revision=latest_ready,
        traffic=traffic,
        memory_limit=_memory(containers),
        max_instances=max_instances or None,
        reconciling=service.reconciling,
        updated_at=_datetime(service.update_time),
        etag=service.etag,
        generation=int(service.generation or 0),
        observed_generation=int(service.observed_generation or 0),
    )


def revision_state(revision: Any) -> RevisionState:
    ready_condition = next((c for c in revision.conditions if c.type_ == "Ready"), None)
    ready, message, since = _ready(ready_condition)
    containers = list(revision.containers)
    return RevisionState(
        name=short_revision(revision.name),
        created_at=_datetime(revision.create_time),
        ready=ready,
        ready_message=message,
        ready_since=since,
        image=containers[0].image if containers else "",
        memory_limit=_memory(containers),
    )


def log_record(entry: Any) -> LogRecord:
    """A `LogEntry` message from `list_log_entries` as a LogRecord."""
    from google.cloud.logging_v2.types import LogEntry
    from google.logging.type import log_severity_pb2

    message, error_code, payload_path = "", "", ""
    payload = LogEntry.pb(entry).WhichOneof("payload")
    if payload == "text_payload":
        message = entry.text_payload
    elif payload == "json_payload":
        fields = entry.json_payload
        message = str(fields.get("message") or fields.get("error_message") or "")
        error_code = str(fields.get("error_code") or "")
        payload_path = str(fields.get("path") or "")
    http = _http_info(entry.http_request) if "http_request" in entry else None
    labels = entry.resource.labels if "resource" in entry else {}
    return LogRecord(
        timestamp=datetime.fromtimestamp(entry.timestamp.timestamp(), tz=UTC),
        severity=log_severity_pb2.LogSeverity.Name(entry.severity),
        log_name=entry.log_name,
        revision=str(labels.get("revision_name", "")),
        message=message.strip(),
        http=http,
        error_code=error_code,
        path=(http.path if http and http.path else payload_path),
    )


def _http_info(request: Any) -> HttpInfo:
    url = request.request_url
    latency = request.latency if request.HasField("latency") else None
    return HttpInfo(
        method=request.request_method,
        url=url,
        path=urlsplit(url).path if url else "",
        status=request.status or None,
        latency_ms=(latency.seconds + latency.nanos / 1e9) * 1000 if latency is not None else None,
    )


def _ready(condition: Any) -> tuple[bool | None, str, datetime | None]:
    if condition is None or not condition.type_:
        return None, "", None
    state = condition.State
    if condition.state == state.CONDITION_SUCCEEDED:
        ready: bool | None = True
    elif condition.state == state.CONDITION_FAILED:
        ready = False
    else:
        ready = None
    return ready, condition.message, _datetime(condition.last_transition_time)


def _datetime(value: Any) -> datetime | None:
    # proto-plus gives DatetimeWithNanoseconds, or a zero epoch when the field is unset.
    if value is None or (hasattr(value, "timestamp") and value.timestamp() == 0):
        return None
    return datetime.fromtimestamp(value.timestamp(), tz=UTC)


def _memory(containers: list[Any]) -> str | None:
    for container in containers:
        memory = container.resources.limits.get("memory")
        if memory:
            return str(memory)
    return None
