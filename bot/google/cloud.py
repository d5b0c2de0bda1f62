"""Adapters for Cloud Run (run_v2), Cloud Logging and the service's health endpoint.

Thin on purpose: each call goes through the real generated Google client, with its own
timeout, and comes back as a small frozen record (`ServiceState`, `RevisionState`,
`LogRecord`, `HealthResult`), so diagnostics and tests never touch protobufs.

Cloud Run is `run_v2` over REST; Cloud Logging is `LoggingServiceV2Client`, which
google-cloud-logging generates for gRPC only. In production both use Application Default
Credentials. When an API URL is given (`CLOUD_RUN_API_URL` / `CLOUD_LOGGING_API_URL`, read by
the caller) they talk to it with anonymous credentials, which is how the sandbox emulators are
reached: Cloud Run REST at that base URL, Cloud Logging gRPC at its host and port (plaintext
for `http://`, TLS for `https://`). The transports are the same in tests and in production.
Google libraries are imported inside functions so the bot starts fast.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.domain.capacity import LOGGING, CapacityFinding
from bot.domain.service import (
    ChangeError,
    ChangeResult,
    HealthResult,
    LogRecord,
    RequestMetrics,
    RevisionState,
    ServiceRef,
    ServiceState,
    short_revision,
)
from bot.google import metrics
from bot.google.convert import EPOCH, change_error, log_record, revision_state, service_state
from bot.google.health import probe_health
from bot.google.shared_reads import SharedReads

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 8.0
DEFAULT_WAIT_S = 300.0  # a traffic or template change usually settles in 1-3 minutes
LOG_PAGE_SIZE = 1000  # the Logging API's maximum page
REVISIONS_PAGE = 50
MAX_REVISION_PAGES = 20  # 1,000 revisions, Cloud Run's cap per service
LOG_SHARE_S = 15.0  # how long one diagnosis's log reads serve the next of the same service


class CloudSources:
    """The three things diagnostics reads. One instance per process; clients are made once.

    `log_reads` lets diagnoses running within `log_share_s` of each other share their Cloud
    Logging answers (see bot/shared_reads.py); 0 shares only reads still under way.
    """

    def __init__(
        self,
        run_api_url: str | None = None,
        logging_api_url: str | None = None,
        *,
        log_share_s: float = LOG_SHARE_S,
        monitoring_api_url: str | None = None,
    ) -> None:
        self.run_api_url = run_api_url.rstrip("/") if run_api_url else None
        self.logging_api_url = logging_api_url.rstrip("/") if logging_api_url else None
        self.monitoring_api_url = monitoring_api_url.rstrip("/") if monitoring_api_url else None
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self.log_reads = SharedReads(log_share_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudSources:
        return cls(
            env.get("CLOUD_RUN_API_URL") or None,
            env.get("CLOUD_LOGGING_API_URL") or None,
            monitoring_api_url=env.get("CLOUD_MONITORING_API_URL") or None,
        )

    def warm_up(self) -> None:
        """Import the Google libraries and build the clients now rather than on first use."""
        self._run_client("services")
        self._run_client("revisions")
        self._logging_client()
        if self.monitoring_api_url:  # with Application Default Credentials, built on first use
            self._monitoring_client()

    def _monitoring_client(self) -> Any:
        with self._lock:
            client = self._clients.get("monitoring")
            if client is None:
                client = self._clients["monitoring"] = metrics.monitoring_client(self.monitoring_api_url)
            return client

    # -- Cloud Run -------------------------------------------------------------------------

    def get_service(self, ref: ServiceRef, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ServiceState:
        # No retry: a diagnosis says "unavailable (503)" at once rather than time out retrying.
        proto = self._run_client("services").get_service(name=ref.path, timeout=timeout_s, retry=None)
        return service_state(proto)

    def list_revisions(
        self,
        ref: ServiceRef,
        *,
        limit: int = 5,
        enough: Callable[[Sequence[RevisionState]], bool] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[RevisionState]:
        """The newest revisions, newest first: at least `limit` (when there are that many), and
        with `enough` as many as it takes for `enough(revisions)` to hold (the target, or the
        look-back a rule needs).

        `ListRevisions` answers "sorted by creation time, descending" (revision.proto), so pages
        (REVISIONS_PAGE at a time, each call under `timeout_s`) are read only until the answer
        is known: on a service with 1,000 revisions that is usually one call, not twenty.
        Cloud Run keeps at most 1,000 revisions, so at most MAX_REVISION_PAGES calls."""
        from google.cloud import run_v2

        client = self._run_client("revisions")
        request = run_v2.ListRevisionsRequest(parent=ref.path, page_size=REVISIONS_PAGE)
        pager = client.list_revisions(request=request, timeout=timeout_s, retry=None)
        revisions: list[RevisionState] = []
        for number, page in enumerate(pager.pages, start=1):
            revisions += [revision_state(r) for r in page.revisions]
            if _answered(revisions, limit, enough) is not None or number >= MAX_REVISION_PAGES:
                break
        # Stable for the documented order; a defence only if an answer ever came otherwise.
        revisions.sort(key=lambda r: r.created_at or EPOCH, reverse=True)
        return revisions[: _answered(revisions, limit, enough) or len(revisions)]

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
        self,
        ref: ServiceRef,
        revision: str,
        *,
        etag: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """All traffic to `revision`, percentages only (update mask `traffic`): every tagged
        target stays, with its tag, at 0%. With `etag` (the one the change was proposed on) the
        write is conditional: when the service no longer has it nothing is sent ("stale"), and
        Cloud Run refuses the write if it changes in between. Waits for the operation. Raises
        ChangeError."""
        from google.cloud import run_v2

        current = self._read_for_write(ref, etag, timeout_s)
        target = run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=short_revision(revision),
            percent=100,
        )
        service = run_v2.Service(name=ref.path, traffic=[*_tagged_at_zero(current.traffic), target])
        service.etag = etag or current.etag
        return self._patch(service, ["traffic"], timeout_s=timeout_s, wait_s=wait_s)

    def change_template(
        self,
        ref: ServiceRef,
        *,
        memory: str | None = None,
        max_instances: int | None = None,
        traffic_to_latest: bool = False,
        etag: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        wait_s: float = DEFAULT_WAIT_S,
    ) -> ChangeResult:
        """Change the revision template (memory limit, instance cap), which makes a new
        revision; with `traffic_to_latest`, also send all traffic to it (tagged targets stay at
        0%). Conditional on `etag` like `move_traffic`. Raises ChangeError."""
        from google.cloud import run_v2

        current = self._read_for_write(ref, etag, timeout_s)
        template = current.template
        if memory is not None:
            for container in template.containers:
                container.resources.limits["memory"] = memory
        if max_instances is not None:
            template.scaling.max_instance_count = max_instances
        template.revision = ""  # let Cloud Run name the new revision
        service = run_v2.Service(name=ref.path, template=template)
        service.etag = etag or current.etag
        mask = ["template"]
        if traffic_to_latest:
            latest = run_v2.TrafficTarget(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, percent=100
            )
            service.traffic = [*_tagged_at_zero(current.traffic), latest]
            mask.append("traffic")
        return self._patch(service, mask, timeout_s=timeout_s, wait_s=wait_s)

    def _read_for_write(self, ref: ServiceRef, etag: str, timeout_s: float) -> Any:
        """The service as it is now, to build the write from; "stale" (nothing sent) when it no
        longer has the etag the change was proposed on."""
        try:
            current = self._get_service_proto(ref, timeout_s)
        except Exception as exc:  # noqa: BLE001 - classified for the person who confirmed
            raise change_error(exc, sent=False) from exc
        if etag and current.etag != etag:
            raise ChangeError(
                "stale", f"{ref.name} changed since the change was proposed (its etag is no longer {etag})", sent=False
            )
        return current

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
        # REST everywhere, so production speaks exactly what the tests exercise.
        if not self.run_api_url:
            return cls(transport="rest")  # Application Default Credentials
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

        Returns the records (newest first) and whether there may be more than `max_entries`
        (the API offered another page). Each `entries:list` call gets `timeout_s` and is not
        retried: the read quota is per project and per minute, and diagnose has its own clock.
        """
        from google.cloud.logging_v2.types import ListLogEntriesRequest

        request = ListLogEntriesRequest(
            resource_names=[f"projects/{ref.project}"],
            filter=service_log_filter(ref, since, condition),
            order_by="timestamp desc",
            page_size=min(page_size, max_entries, LOG_PAGE_SIZE),
        )
        pager = self._logging_client().list_log_entries(request=request, timeout=timeout_s, retry=None)
        records: list[LogRecord] = []
        more = False
        for page in pager.pages:
            records += [log_record(entry) for entry in page.entries]
            more = bool(page.next_page_token)
            if len(records) >= max_entries:
                break
        return records[:max_entries], more or len(records) > max_entries

    def _logging_client(self) -> Any:
        with self._lock:
            client = self._clients.get("logging")
            if client is None:
                client = self._clients["logging"] = self._make_logging_client()
            return client

    def _make_logging_client(self) -> Any:
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

        if not self.logging_api_url:
            return LoggingServiceV2Client()  # Application Default Credentials, logging.googleapis.com
        import grpc
        from google.cloud.logging_v2.services.logging_service_v2.transports import LoggingServiceV2GrpcTransport

        # A channel given to the transport carries no credentials: anonymous, as for run_v2.
        url = urlsplit(self.logging_api_url if "//" in self.logging_api_url else f"http://{self.logging_api_url}")
        if url.scheme == "https":
            channel = grpc.secure_channel(f"{url.hostname}:{url.port or 443}", grpc.ssl_channel_credentials())
        else:
            channel = grpc.insecure_channel(f"{url.hostname}:{url.port or 80}")
        return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))

    # -- request metrics (VERIFY) -----------------------------------------------------------

    def request_metrics(
        self, ref: ServiceRef, start: datetime, end: datetime, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> RequestMetrics:
        """Requests, 5xx and p95 latency of the service between `start` and `end`: from Cloud
        Monitoring (exact, two calls), else counted from the request log (and the result says
        which, and why). Raises only when neither answers."""
        try:
            client = self._monitoring_client()
            return metrics.from_monitoring(client, ref, start, end, timeout_s)
        except Exception as exc:  # noqa: BLE001 - the request log is the fallback
            why = metrics.describe_failure(exc)
            log.warning("%s; counting the request log instead", why)
        condition = f'logName="projects/{ref.project}/logs/run.googleapis.com%2Frequests"'
        records, sampled = self.query_logs(
            ref, start, condition, max_entries=metrics.LOG_MAX_ENTRIES, timeout_s=timeout_s
        )
        found = metrics.from_logs(records, start, end, sampled)
        return RequestMetrics(found.requests, found.errors, found.p95_ms, found.source, why)

    def capacity(
        self, ref: ServiceRef, start: datetime, end: datetime, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> CapacityFinding:
        """Memory, instances and traffic per minute from Cloud Monitoring; when it cannot answer,
        a finding that says Cloud Logging is the source (the log signals stand in) and why."""
        try:
            client = self._monitoring_client()
            return metrics.capacity_from_monitoring(client, ref, start, end, timeout_s)
        except Exception as exc:  # noqa: BLE001 - the log signals are the fallback
            why = metrics.describe_failure(exc)
            log.warning("%s; diagnose reads memory and traffic from the logs instead", why)
            return CapacityFinding(LOGGING, note=why)

    # -- health ----------------------------------------------------------------------------

    def probe_health(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> HealthResult:
        return probe_health(url, timeout_s=timeout_s)


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


def _answered(
    revisions: Sequence[RevisionState], limit: int, enough: Callable[[Sequence[RevisionState]], bool] | None
) -> int | None:
    """The shortest newest-first prefix that answers the question (at least `limit` long and
    `enough`, which holds for a prefix only if for every longer one), or None when the
    revisions read so far do not."""
    if len(revisions) < limit or (enough is not None and not enough(revisions)):
        return None
    if enough is None:
        return limit
    low, high = limit, len(revisions)  # enough(revisions[:high]) holds: find the shortest
    while low < high:
        middle = (low + high) // 2
        if enough(revisions[:middle]):
            high = middle
        else:
            low = middle + 1
    return high


def _tagged_at_zero(traffic: Any) -> list[Any]:
    """The tagged targets of a traffic spec at 0%: a traffic write keeps their tags (and the tag
    URLs people test with) and moves percentages only."""
    from google.cloud import run_v2

    kept = []
    for target in traffic:
        if target.tag:
            copy = run_v2.TrafficTarget(type_=target.type_, revision=target.revision, tag=target.tag, percent=0)
            kept.append(copy)
    return kept
