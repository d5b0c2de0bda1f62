"""Adapters for Cloud Run (run_v2), Cloud Logging and the service's health endpoint.

Thin on purpose: each call goes through the real Google client and comes back as a small
frozen record (`ServiceState`, `RevisionState`, `LogRecord`, `HealthResult`), so diagnostics
and tests never touch protobufs. In production the clients use Application Default
Credentials; when an API URL is given (`CLOUD_RUN_API_URL` / `CLOUD_LOGGING_API_URL`, read by
the caller) they talk REST to that URL with anonymous credentials, which is how the sandbox
emulators are reached. Google libraries are imported inside functions so the bot starts fast.
"""

from __future__ import annotations

import functools
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 8.0
DEFAULT_WAIT_S = 300.0  # a traffic or template change usually settles in 1-3 minutes
HEALTH_BODY_CHARS = 200
LOG_PAGE_SIZE = 1000  # the Logging API's maximum page
REVISIONS_PAGE = 50
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOGGING_SCOPES = (
    "https://www.googleapis.com/auth/logging.read",
    "https://www.googleapis.com/auth/cloud-platform",
)


@dataclass(frozen=True)
class ServiceRef:
    """The Cloud Run service the bot acts on (the config's `service:` block)."""

    project: str
    region: str
    name: str
    health_url: str = ""

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> ServiceRef:
        return cls(
            project=str(block["project"]),
            region=str(block["region"]),
            name=str(block["name"]),
            health_url=str(block.get("health_url") or ""),
        )


@dataclass(frozen=True)
class TrafficShare:
    revision: str  # short revision id, e.g. tai-autonomics-00042-xyz
    percent: int
    tag: str = ""
    latest: bool = False  # allocated as "latest ready revision"


@dataclass(frozen=True)
class ServiceState:
    name: str
    url: str
    ready: bool | None  # None: the Ready condition is still reconciling
    ready_message: str
    latest_created_revision: str
    latest_ready_revision: str
    traffic: tuple[TrafficShare, ...]
    memory_limit: str | None
    max_instances: int | None
    reconciling: bool = False
    updated_at: datetime | None = None  # last change to the service, traffic included


@dataclass(frozen=True)
class RevisionState:
    name: str
    created_at: datetime | None
    ready: bool | None
    ready_message: str
    ready_since: datetime | None  # when Ready last changed: the best "went live" estimate
    image: str
    memory_limit: str | None


@dataclass(frozen=True)
class HttpInfo:
    method: str
    url: str
    path: str
    status: int | None
    latency_ms: float | None


@dataclass(frozen=True)
class LogRecord:
    timestamp: datetime
    severity: str
    log_name: str
    revision: str
    message: str
    http: HttpInfo | None = None
    error_code: str = ""
    path: str = ""  # the request path, from httpRequest or jsonPayload.path


@dataclass(frozen=True)
class HealthResult:
    url: str
    status: int
    latency_ms: float
    body: str  # at most HEALTH_BODY_CHARS characters


@dataclass(frozen=True)
class ChangeResult:
    """A finished long-running operation on the service, and the service it left behind."""

    operation: str
    service: ServiceState


class ChangeError(Exception):
    """Cloud Run refused a change or did not finish it in time.

    `reason` is one of permission_denied, not_found, failed_precondition, conflict, invalid,
    timeout, unavailable, error; `sent` says whether Google accepted the request (so the change
    may still be happening) or refused it outright (nothing changed).
    """

    def __init__(self, reason: str, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sent = sent


class CloudSources:
    """The three things diagnostics reads. One instance per process; clients are made once."""

    def __init__(
        self,
        run_api_url: str | None = None,
        logging_api_url: str | None = None,
    ) -> None:
        self.run_api_url = run_api_url.rstrip("/") if run_api_url else None
        self.logging_api_url = logging_api_url.rstrip("/") if logging_api_url else None
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._logging_credentials: Any = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudSources:
        return cls(env.get("CLOUD_RUN_API_URL") or None, env.get("CLOUD_LOGGING_API_URL") or None)

    def warm_up(self) -> None:
        """Import the Google libraries and build the clients now rather than on first use."""
        self._run_client("services")
        self._run_client("revisions")
        self._logging_session_credentials()

    # -- Cloud Run -------------------------------------------------------------------------

    def get_service(self, ref: ServiceRef, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ServiceState:
        return service_state(self._get_service_proto(ref, timeout_s))

    def list_revisions(
        self, ref: ServiceRef, *, limit: int = 5, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[RevisionState]:
        """The newest `limit` revisions, newest first.

        Reads one page of up to REVISIONS_PAGE and sorts it here rather than trusting the
        API's order; a service with a longer history than that is cut at the page.
        """
        from google.cloud import run_v2

        client = self._run_client("revisions")
        size = max(limit, REVISIONS_PAGE)
        request = run_v2.ListRevisionsRequest(parent=ref.path, page_size=size)
        pager = client.list_revisions(request=request, timeout=timeout_s)
        first_page = next(iter(pager.pages), None)
        revisions = [revision_state(r) for r in (first_page.revisions if first_page else [])]
        revisions.sort(key=lambda r: r.created_at or _EPOCH, reverse=True)
        return revisions[:limit]

    def set_traffic(
        self,
        ref: ServiceRef,
        revision: str,
        percent: int = 100,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """Send `percent` of traffic to `revision` (the rest to latest) and wait until done."""
        from google.cloud import run_v2

        if not 0 < percent <= 100:
            raise ValueError(f"percent must be 1-100, got {percent}")
        kind = run_v2.TrafficTargetAllocationType
        targets = [
            run_v2.TrafficTarget(
                type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                revision=short_revision(revision),
                percent=percent,
            )
        ]
        if percent < 100:
            targets.append(
                run_v2.TrafficTarget(type_=kind.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100 - percent)
            )

        def change(service: Any) -> None:
            del service.traffic[:]
            service.traffic.extend(targets)

        return self._update_service(ref, change, timeout_s=timeout_s, wait_s=wait_s)

    def update_memory(
        self,
        ref: ServiceRef,
        memory: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """Set the memory limit (e.g. `1Gi`) of every container; creates a new revision."""

        def change(service: Any) -> None:
            for container in service.template.containers:
                container.resources.limits["memory"] = memory
            service.template.revision = ""  # let Cloud Run name the new revision

        return self._update_service(ref, change, timeout_s=timeout_s, wait_s=wait_s)

    def update_max_instances(
        self,
        ref: ServiceRef,
        max_instances: int,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """Set the revision template's instance cap; creates a new revision."""
        if max_instances < 1:
            raise ValueError(f"max_instances must be at least 1, got {max_instances}")

        def change(service: Any) -> None:
            service.template.scaling.max_instance_count = max_instances
            service.template.revision = ""

        return self._update_service(ref, change, timeout_s=timeout_s, wait_s=wait_s)

    def move_traffic(
        self, ref: ServiceRef, revision: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, wait_s: float = DEFAULT_WAIT_S
    ) -> ChangeResult:
        """All traffic to `revision`, nothing else touched (update mask `traffic`); waits for
        the operation. Raises ChangeError."""
        from google.cloud import run_v2

        target = run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=short_revision(revision),
            percent=100,
        )
        service = run_v2.Service(name=ref.path, traffic=[target])
        return self._patch(service, ["traffic"], timeout_s=timeout_s, wait_s=wait_s)

    def change_template(
        self,
        ref: ServiceRef,
        *,
        memory: str | None = None,
        max_instances: int | None = None,
        traffic_to_latest: bool = False,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """Change the revision template (memory limit, instance cap), which makes a new
        revision; with `traffic_to_latest`, also send all traffic to it. Raises ChangeError."""
        from google.cloud import run_v2

        try:
            current = self._get_service_proto(ref, timeout_s)
        except Exception as exc:  # noqa: BLE001 - classified for the person who confirmed
            raise change_error(exc, sent=False) from exc
        template = current.template
        if memory is not None:
            for container in template.containers:
                container.resources.limits["memory"] = memory
        if max_instances is not None:
            template.scaling.max_instance_count = max_instances
        template.revision = ""  # let Cloud Run name the new revision
        service = run_v2.Service(name=ref.path, template=template)
        mask = ["template"]
        if traffic_to_latest:
            service.traffic = [
                run_v2.TrafficTarget(
                    type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
                )
            ]
            mask.append("traffic")
        return self._patch(service, mask, timeout_s=timeout_s, wait_s=wait_s)

    def _patch(self, service: Any, mask: list[str], *, timeout_s: float, wait_s: float) -> ChangeResult:
        import concurrent.futures

        from google.cloud import run_v2
        from google.protobuf import field_mask_pb2

        request = run_v2.UpdateServiceRequest(service=service, update_mask=field_mask_pb2.FieldMask(paths=mask))
        try:
            operation = self._run_client("services").update_service(request=request, timeout=timeout_s)
        except Exception as exc:  # noqa: BLE001
            raise change_error(exc, sent=False) from exc
        try:
            result = operation.result(timeout=wait_s)
        except concurrent.futures.TimeoutError as exc:
            raise ChangeError(
                "timeout",
                f"Cloud Run accepted the change but its operation had not finished after {wait_s:.0f} s",
                sent=True,
            ) from exc
        except Exception as exc:  # noqa: BLE001
            raise change_error(exc, sent=True) from exc
        return ChangeResult(operation=operation.operation.name, service=service_state(result))

    def _get_service_proto(self, ref: ServiceRef, timeout_s: float) -> Any:
        return self._run_client("services").get_service(name=ref.path, timeout=timeout_s)

    def _update_service(self, ref: ServiceRef, change: Any, *, timeout_s: float, wait_s: float) -> ChangeResult:
        # UpdateService without an update_mask replaces the whole service, so send back
        # everything just read with one thing changed (its etag guards against a race).
        service = self._get_service_proto(ref, timeout_s)
        change(service)
        operation = self._run_client("services").update_service(service=service, timeout=timeout_s)
        result = operation.result(timeout=wait_s)
        return ChangeResult(operation=operation.operation.name, service=service_state(result))

    def _run_client(self, kind: str) -> Any:
        with self._lock:
            client = self._clients.get(kind)
            if client is None:
                client = self._clients[kind] = self._make_run_client(kind)
            return client

    def _make_run_client(self, kind: str) -> Any:
        from google.cloud import run_v2

        cls = run_v2.ServicesClient if kind == "services" else run_v2.RevisionsClient
        if not self.run_api_url:
            return cls()  # Application Default Credentials, gRPC
        from google.auth.credentials import AnonymousCredentials

        return cls(
            credentials=AnonymousCredentials(),
            transport="rest",
            client_options={"api_endpoint": self.run_api_url},
        )

    # -- Cloud Logging ---------------------------------------------------------------------

    def query_logs(
        self,
        ref: ServiceRef,
        since: datetime,
        condition: str = "",
        *,
        max_entries: int = 2000,
        page_size: int = LOG_PAGE_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> tuple[list[LogRecord], bool]:
        """The newest log entries of the service since `since` matching `condition`.

        Returns the records (newest first) and whether `max_entries` cut the list short.
        """
        client = self._logging_client(ref.project, timeout_s)
        entries = client.list_entries(
            resource_names=[f"projects/{ref.project}"],
            filter_=service_log_filter(ref, since, condition),
            order_by="timestamp desc",
            page_size=min(page_size, max_entries + 1),
            max_results=max_entries + 1,
        )
        records = [log_record(entry) for entry in entries]
        return records[:max_entries], len(records) > max_entries

    def _logging_client(self, project: str, timeout_s: float) -> Any:
        credentials = self._logging_session_credentials()
        options = {"api_endpoint": self.logging_api_url} if self.logging_api_url else None
        # The HTTP client waits 60 s per page whatever the caller wants; a session that caps
        # the timeout keeps an abandoned diagnostic thread from lingering that long.
        return _reading_client_class()(
            project=project,
            credentials=credentials,
            _http=_capped_session(credentials, timeout_s),
            _use_grpc=False,
            client_options=options,
        )

    def _logging_session_credentials(self) -> Any:
        with self._lock:
            if self._logging_credentials is None:
                if self.logging_api_url:
                    from google.auth.credentials import AnonymousCredentials

                    self._logging_credentials = AnonymousCredentials()
                else:
                    import google.auth

                    self._logging_credentials, _ = google.auth.default(scopes=LOGGING_SCOPES)
            return self._logging_credentials

    # -- health ----------------------------------------------------------------------------

    def probe_health(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> HealthResult:
        return probe_health(url, timeout_s=timeout_s)


def probe_health(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> HealthResult:
    """GET `url`; an HTTP error status is a result, a network failure raises."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"health_url must be http(s), got {url!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "incident-bot/diagnose"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            status, raw = response.status, response.read(4096)
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read(4096)
    latency_ms = (time.perf_counter() - started) * 1000
    body = raw.decode("utf-8", "replace").strip()[:HEALTH_BODY_CHARS]
    return HealthResult(url=url, status=status, latency_ms=round(latency_ms, 1), body=body)


def service_log_filter(ref: ServiceRef, since: datetime, condition: str = "") -> str:
    """The Logging filter for the service's entries since `since` (an explicit time bound
    keeps the client from adding its own 24 h default and the API from scanning 30 days)."""
    parts = [
        'resource.type="cloud_run_revision"',
        f'resource.labels.service_name="{ref.name}"',
        f'resource.labels.location="{ref.region}"',
        f'timestamp>="{since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}"',
    ]
    if condition:
        parts.append(condition)
    return " AND ".join(parts)


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


def short_revision(name: str) -> str:
    return name.rsplit("/", 1)[-1]


# -- conversions from the Google types -------------------------------------------------------


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
    payload = entry.payload
    message, error_code, payload_path = "", "", ""
    if isinstance(payload, str):
        message = payload
    elif isinstance(payload, Mapping):
        message = str(payload.get("message") or payload.get("error_message") or "")
        error_code = str(payload.get("error_code") or "")
        payload_path = str(payload.get("path") or "")
    http = _http_info(entry.http_request) if entry.http_request else None
    labels = (entry.resource.labels if entry.resource else None) or {}
    return LogRecord(
        timestamp=entry.timestamp,
        severity=entry.severity or "DEFAULT",
        log_name=entry.log_name or "",
        revision=str(labels.get("revision_name", "")),
        message=message.strip(),
        http=http,
        error_code=error_code,
        path=(http.path if http and http.path else payload_path),
    )


def _http_info(request: Mapping[str, Any]) -> HttpInfo:
    url = str(request.get("requestUrl") or "")
    status = request.get("status")
    return HttpInfo(
        method=str(request.get("requestMethod") or ""),
        url=url,
        path=urlsplit(url).path if url else "",
        status=int(status) if status is not None else None,
        latency_ms=_latency_ms(request.get("latency")),
    )


def _latency_ms(value: Any) -> float | None:
    # JSON carries a Duration as "1.234s"; be lenient about the dict form too.
    if value is None:
        return None
    if isinstance(value, Mapping):
        return (float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9) * 1000
    text = str(value).strip()
    try:
        return float(text[:-1] if text.endswith("s") else text) * 1000
    except ValueError:
        return None


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


@functools.cache
def _reading_client_class() -> Any:
    """A logging Client for reading only.

    Turning an entry into a LogEntry makes the stock client build a Logger per log name, and
    a Logger built without a resource asks the GCE metadata server where it runs (two HTTP
    calls to metadata.google.internal, whose DNS lookup can hang off Google Cloud). Entries
    we read are never written back, so their loggers get a fixed resource instead.
    """
    from google.cloud import logging as cloud_logging
    from google.cloud.logging_v2.resource import Resource

    class ReadingClient(cloud_logging.Client):  # type: ignore[misc]
        def logger(self, name: str, *, labels: Any = None, resource: Any = None) -> Any:
            resource = resource or Resource(type="global", labels={})
            return super().logger(name, labels=labels, resource=resource)

    return ReadingClient


def _capped_session(credentials: Any, timeout_s: float) -> Any:
    from google.auth.transport.requests import AuthorizedSession

    class CappedSession(AuthorizedSession):  # type: ignore[misc]
        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            timeout = kwargs.get("timeout")
            if timeout is None or (isinstance(timeout, (int, float)) and timeout > timeout_s):
                kwargs["timeout"] = timeout_s
            return super().request(method, url, *args, **kwargs)

    return CappedSession(credentials)
