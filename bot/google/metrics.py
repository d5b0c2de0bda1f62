"""The service's request metrics for VERIFY: Cloud Monitoring first, Cloud Logging as fallback.

Cloud Monitoring's `run.googleapis.com/request_count` (by `response_code_class`) and
`request_latencies` (95th percentile) are exact and cost one call each, where counting the
request log reads up to thousands of entries and samples beyond that. They are read with
google-cloud-monitoring's `MetricServiceClient`, which is generated for gRPC only (the library
has no REST transport): like Cloud Logging, Application Default Credentials in production, and
with `CLOUD_MONITORING_API_URL` anonymous gRPC to that host and port (plaintext for `http://`).
When Monitoring cannot answer (down, refused, slow), the request log is counted instead and the
sample says so.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.domain.capacity import CapacityFinding, Point
from bot.domain.service import LogRecord, RequestMetrics, ServiceRef

log = logging.getLogger(__name__)

MONITORING = "Cloud Monitoring"
LOGGING = "Cloud Logging"
MIN_ALIGNMENT_S = 60  # the API refuses a shorter alignment period
LOG_MAX_ENTRIES = 5000


def monitoring_client(api_url: str | None) -> Any:
    from google.cloud.monitoring_v3 import MetricServiceClient

    if not api_url:
        return MetricServiceClient()  # Application Default Credentials, monitoring.googleapis.com
    import grpc
    from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport

    url = urlsplit(api_url if "//" in api_url else f"http://{api_url}")
    if url.scheme == "https":
        channel = grpc.secure_channel(f"{url.hostname}:{url.port or 443}", grpc.ssl_channel_credentials())
    else:
        channel = grpc.insecure_channel(f"{url.hostname}:{url.port or 80}")
    return MetricServiceClient(transport=MetricServiceGrpcTransport(channel=channel))


def service_filter(ref: ServiceRef, metric: str) -> str:
    return (
        f'metric.type = "{metric}" AND resource.type = "cloud_run_revision"'
        f' AND resource.labels.service_name = "{ref.name}" AND resource.labels.location = "{ref.region}"'
    )


def from_monitoring(client: Any, ref: ServiceRef, start: datetime, end: datetime, timeout_s: float) -> RequestMetrics:
    """Requests, 5xx and p95 between `start` and `end`: two `timeSeries.list` calls, aligned over
    the whole interval (at least the API's 60 s)."""
    from google.cloud.monitoring_v3 import types
    from google.protobuf import duration_pb2, timestamp_pb2

    period = max(MIN_ALIGNMENT_S, math.ceil((end - start).total_seconds()))
    interval = types.TimeInterval(
        start_time=timestamp_pb2.Timestamp(seconds=int(start.timestamp()), nanos=start.microsecond * 1000),
        end_time=timestamp_pb2.Timestamp(seconds=int(end.timestamp()), nanos=end.microsecond * 1000),
    )
    aggregation = types.Aggregation
    counts = client.list_time_series(
        request=types.ListTimeSeriesRequest(
            name=f"projects/{ref.project}",
            filter=service_filter(ref, "run.googleapis.com/request_count"),
            interval=interval,
            aggregation=aggregation(
                alignment_period=duration_pb2.Duration(seconds=period),
                per_series_aligner=aggregation.Aligner.ALIGN_DELTA,
                cross_series_reducer=aggregation.Reducer.REDUCE_SUM,
                group_by_fields=["metric.labels.response_code_class"],
            ),
            view=types.ListTimeSeriesRequest.TimeSeriesView.FULL,
        ),
        timeout=timeout_s,
        retry=None,
    )
    total = errors = 0
    for series in counts:
        count = sum(int(point.value.int64_value) for point in series.points)
        total += count
        if series.metric.labels.get("response_code_class") == "5xx":
            errors += count
    latencies = client.list_time_series(
        request=types.ListTimeSeriesRequest(
            name=f"projects/{ref.project}",
            filter=service_filter(ref, "run.googleapis.com/request_latencies"),
            interval=interval,
            aggregation=aggregation(
                alignment_period=duration_pb2.Duration(seconds=period),
                per_series_aligner=aggregation.Aligner.ALIGN_DELTA,
                cross_series_reducer=aggregation.Reducer.REDUCE_PERCENTILE_95,
            ),
            view=types.ListTimeSeriesRequest.TimeSeriesView.FULL,
        ),
        timeout=timeout_s,
        retry=None,
    )
    values = [float(point.value.double_value) for series in latencies for point in series.points]
    return RequestMetrics(total, errors, max(values) if values and total else None, MONITORING)


MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"  # DELTA, DISTRIBUTION, 0..1
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"  # GAUGE, INT64, label `state`
REQUEST_COUNT = "run.googleapis.com/request_count"  # DELTA, INT64, labels `response_code(_class)`


def capacity_from_monitoring(
    client: Any, ref: ServiceRef, start: datetime, end: datetime, timeout_s: float
) -> CapacityFinding:
    """Per-minute memory (p99 across instances), instance count and requests / 429s between
    `start` and `end`: three `timeSeries.list` calls sharing `timeout_s` between them.

    Memory utilisation is a DISTRIBUTION: ALIGN_PERCENTILE_99 turns each instance's minute into
    a number, REDUCE_MAX keeps the fullest. Instance count is a GAUGE: ALIGN_MAX per minute,
    summed over states and revisions. Requests are a DELTA count: ALIGN_DELTA, summed by
    `response_code`."""
    from google.cloud.monitoring_v3 import types
    from google.protobuf import duration_pb2, timestamp_pb2

    deadline = time.monotonic() + timeout_s
    interval = types.TimeInterval(
        start_time=timestamp_pb2.Timestamp(seconds=int(start.timestamp()), nanos=start.microsecond * 1000),
        end_time=timestamp_pb2.Timestamp(seconds=int(end.timestamp()), nanos=end.microsecond * 1000),
    )
    aggregation = types.Aggregation

    def query(metric: str, aligner: Any, reducer: Any, group_by: list[str]) -> list[Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            from google.api_core import exceptions as gexc

            raise gexc.DeadlineExceeded(f"{MONITORING} timed out")
        pager = client.list_time_series(
            request=types.ListTimeSeriesRequest(
                name=f"projects/{ref.project}",
                filter=service_filter(ref, metric),
                interval=interval,
                aggregation=aggregation(
                    alignment_period=duration_pb2.Duration(seconds=MIN_ALIGNMENT_S),
                    per_series_aligner=aligner,
                    cross_series_reducer=reducer,
                    group_by_fields=group_by,
                ),
                view=types.ListTimeSeriesRequest.TimeSeriesView.FULL,
            ),
            timeout=remaining,
            retry=None,
        )
        return list(pager)

    memory = query(MEMORY_UTILIZATIONS, aggregation.Aligner.ALIGN_PERCENTILE_99, aggregation.Reducer.REDUCE_MAX, [])
    instances = query(INSTANCE_COUNT, aggregation.Aligner.ALIGN_MAX, aggregation.Reducer.REDUCE_SUM, [])
    requests = query(
        REQUEST_COUNT,
        aggregation.Aligner.ALIGN_DELTA,
        aggregation.Reducer.REDUCE_SUM,
        ["metric.labels.response_code"],
    )
    per_minute: dict[datetime, float] = {}
    limited: dict[datetime, float] = {}
    for series in requests:
        for at, value in _points(series, integer=True):
            per_minute[at] = per_minute.get(at, 0.0) + value
            if series.metric.labels.get("response_code") == "429":
                limited[at] = limited.get(at, 0.0) + value
    return CapacityFinding(
        MONITORING,
        memory=_series(p for s in memory for p in _points(s, integer=False)),
        instances=_series(p for s in instances for p in _points(s, integer=True)),
        requests=_series(per_minute.items()),
        rate_limited=_series(limited.items()),
    )


def _points(series: Any, integer: bool) -> list[tuple[datetime, float]]:
    found = []
    for point in series.points:
        end = point.interval.end_time
        at = end if isinstance(end, datetime) else datetime.fromtimestamp(end.seconds + end.nanos / 1e9, UTC)
        value = float(point.value.int64_value) if integer else float(point.value.double_value)
        found.append((utc(at), value))
    return found


def _series(points: Any) -> tuple[Point, ...]:
    """Oldest first; the same minute from several series added up."""
    merged: dict[datetime, float] = {}
    for at, value in points:
        merged[at] = merged.get(at, 0.0) + value
    return tuple(Point(at, merged[at]) for at in sorted(merged))


def from_logs(records: list[LogRecord], start: datetime, end: datetime, sampled: bool) -> RequestMetrics:
    """The same figures counted from request log entries (newest first, as read) in
    (`start`, `end`]: the filter's time bound is whole seconds, so it is narrowed here."""
    http = [r.http for r in records if r.http is not None and r.http.status and start < r.timestamp <= end]
    total = len(http)
    errors = sum(1 for h in http if h.status is not None and h.status >= 500)
    latencies = sorted(h.latency_ms for h in http if h.latency_ms is not None)
    p95 = latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else None
    return RequestMetrics(total, errors, p95, LOGGING + (" (sampled)" if sampled else ""))


def describe_failure(exc: Exception) -> str:
    """`Cloud Monitoring unavailable (503)`, `… timed out`, `… refused (PERMISSION_DENIED)`."""
    from google.api_core import exceptions as gexc

    if isinstance(exc, gexc.DeadlineExceeded):
        return f"{MONITORING} timed out"
    if isinstance(exc, gexc.GoogleAPICallError):
        code = getattr(exc, "code", None)
        name = getattr(getattr(exc, "grpc_status_code", None), "name", "") or type(exc).__name__
        return f"{MONITORING} failed ({name}{f', {code}' if isinstance(code, int) else ''})"
    return f"{MONITORING} failed ({type(exc).__name__})"


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)
