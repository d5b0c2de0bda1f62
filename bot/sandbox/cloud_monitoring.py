"""A local Cloud Monitoring API v3: `ListTimeSeries` (REST `timeSeries.list`) over gRPC.

google-cloud-monitoring's `MetricServiceClient` ships gRPC transports only (no REST one), so
this emulator is a gRPC server for `google.monitoring.v3.MetricService` on 127.0.0.1, reached
the way the Logging emulator is: `url` is `http://127.0.0.1:<port>`, read by `bot.google` as
"plaintext gRPC, anonymous". It serves Cloud Run's `run.googleapis.com/request_count` (DELTA,
INT64, label `response_code_class`) and `run.googleapis.com/request_latencies` (DELTA,
DISTRIBUTION, in ms) from the requests the sandbox's live traffic records (`record`), and the
container metrics diagnose reads for Scenario 8 and 9 from per-minute samples a preset loads
(`load_containers`): `run.googleapis.com/container/memory/utilizations` (DELTA, DISTRIBUTION of
0..1 per instance: ALIGN_PERCENTILE_nn, or ALIGN_DELTA with a percentile reducer; no MAX, MIN
or MEAN aligner of a distribution) and `run.googleapis.com/container/instance_count` (GAUGE,
INT64, label `state`: no DELTA, RATE or percentile aligner of a gauge).

Strict where the API is (https://cloud.google.com/monitoring/api/ref_v3/rest/v3/projects.timeSeries/list):
`name` is `projects/{project}`; the filter names exactly one `metric.type` and compares only
`metric.type`, `resource.type`, `resource.labels.*` and `metric.labels.*` with `=`, joined by
AND (anything else is INVALID_ARGUMENT); `interval.endTime` is required and not before
`startTime`; an aligner other than ALIGN_NONE needs an `alignmentPeriod` of at least 60 s; a
cross-series reducer needs an aligner; `groupByFields` needs a reducer; and the aligner and
reducer must suit the metric (ALIGN_DELTA / ALIGN_SUM and REDUCE_SUM for the count; ALIGN_DELTA
and REDUCE_PERCENTILE_50/95/99 for the latency distribution). Every call is kept in
`requests` as the API's JSON under the endpoint name `timeSeries.list`.
"""

from __future__ import annotations

import copy
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.sandbox.health import FaultInjection, Request

SERVICE = "google.monitoring.v3.MetricService"
ENDPOINT = "timeSeries.list"
REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MEMORY_UTILIZATIONS = "run.googleapis.com/container/memory/utilizations"  # DELTA, DISTRIBUTION
INSTANCE_COUNT = "run.googleapis.com/container/instance_count"  # GAUGE, INT64, label state
METRICS = (REQUEST_COUNT, REQUEST_LATENCIES, MEMORY_UTILIZATIONS, INSTANCE_COUNT)
# Aligners the API accepts for each kind (Aggregation.Aligner docs): a DISTRIBUTION has no
# max or min (ALIGN_PERCENTILE_nn or ALIGN_MEAN make it a number); a GAUGE has no delta or rate.
_DISTRIBUTION_ALIGNERS = {"ALIGN_PERCENTILE_99": 99, "ALIGN_PERCENTILE_95": 95, "ALIGN_PERCENTILE_50": 50}
_GAUGE_ALIGNERS = ("ALIGN_MAX", "ALIGN_MIN", "ALIGN_MEAN", "ALIGN_SUM")
_NUMBER_REDUCERS = ("REDUCE_MAX", "REDUCE_MIN", "REDUCE_MEAN", "REDUCE_SUM")
_INTEGER_REDUCERS = ("REDUCE_MAX", "REDUCE_MIN", "REDUCE_SUM", "REDUCE_NONE")  # keep INT64
_GROUPS = {
    REQUEST_COUNT: (
        "metric.labels.response_code_class",
        "metric.labels.response_code",
        "resource.labels.revision_name",
    ),
    REQUEST_LATENCIES: ("resource.labels.revision_name",),
    MEMORY_UTILIZATIONS: ("resource.labels.revision_name",),
    INSTANCE_COUNT: ("metric.labels.state", "resource.labels.revision_name"),
}
MIN_ALIGNMENT_S = 60
_COUNT_ALIGNERS = ("ALIGN_DELTA", "ALIGN_SUM")
_LATENCY_REDUCERS = {"REDUCE_PERCENTILE_50": 50, "REDUCE_PERCENTILE_95": 95, "REDUCE_PERCENTILE_99": 99}
_CLAUSE = re.compile(r'^\s*(?P<field>[a-z_]+(?:\.[a-z_]+)+)\s*=\s*"(?P<value>[^"]*)"\s*$')
_GRPC_CODES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


class ListError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Served:
    """One request the service answered (what Cloud Run's metrics count)."""

    at: datetime
    status: int
    latency_ms: float
    revision: str


@dataclass(frozen=True)
class Sample:
    """One sampled minute of a container metric: a memory utilisation (0..1) of one instance,
    or the number of instances of a revision in a state (`active`, `idle`)."""

    at: datetime
    revision: str
    value: float
    state: str = ""


class MonitoringEmulator(FaultInjection):
    """Cloud Monitoring v3 `ListTimeSeries` for one project's Cloud Run services."""

    def __init__(self, project: str = "demo-project", service: str = "tai-autonomics", region: str = "us-central1"):
        super().__init__()
        self.project, self.service, self.region = project, service, region
        self._served: list[Served] = []
        self._memory: list[Sample] = []
        self._instances: list[Sample] = []
        self._state_lock = threading.Lock()
        self._server: Any = None
        self._port = 0

    def record(self, served: list[Served]) -> None:
        with self._state_lock:
            self._served.extend(served)

    def load_containers(self, memory: list[Sample], instances: list[Sample]) -> None:
        with self._state_lock:
            self._memory, self._instances = list(memory), list(instances)

    def clear(self) -> None:
        with self._state_lock:
            self._served, self._memory, self._instances = [], [], []

    @property
    def calls(self) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.endpoint == ENDPOINT)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MonitoringEmulator:
        if self._server is not None:
            return self
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
        import grpc
        from google.cloud.monitoring_v3.types import ListTimeSeriesRequest

        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
                    self._serve,
                    request_deserializer=ListTimeSeriesRequest.deserialize,
                    response_serializer=lambda response: response.SerializeToString(),
                )
            },
        )
        self._release.clear()
        server = grpc.server(ThreadPoolExecutor(max_workers=16, thread_name_prefix="MonitoringEmulator"))
        server.add_generic_rpc_handlers((handler,))
        self._port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.stop(grace=None)
            self._server = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("MonitoringEmulator is not started")
        return f"http://127.0.0.1:{self._port}"

    # -- ListTimeSeries --------------------------------------------------------------------

    def _serve(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud.monitoring_v3.types import ListTimeSeriesRequest, ListTimeSeriesResponse
        from google.protobuf import json_format

        body = json_format.MessageToDict(ListTimeSeriesRequest.pb(request))
        fault = self._record(Request("GET", f"/v3/{body.get('name', '')}/timeSeries", {}, body, ENDPOINT))
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.hang:
            while not self._release.wait(0.05) and context.is_active():
                pass
            context.abort(grpc.StatusCode.UNAVAILABLE, "released")
        if fault.status is not None:
            context.abort(getattr(grpc.StatusCode, _GRPC_CODES.get(fault.status, "UNKNOWN")), "injected failure")
        try:
            page = self.list_time_series(body)
            response = json_format.ParseDict(page, ListTimeSeriesResponse.pb()())
        except ListError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        except Exception as exc:  # an emulator bug should look like a server error, not a hang
            context.abort(grpc.StatusCode.INTERNAL, f"emulator error: {type(exc).__name__}: {exc}")
        return response

    def list_time_series(self, body: dict[str, Any]) -> dict[str, Any]:
        """One answer for a request in the API's JSON: `{"timeSeries": [...]}`."""
        name = str(body.get("name") or "")
        if not re.fullmatch(r"projects/[^/]+", name):
            raise ListError("INVALID_ARGUMENT", f"name must be projects/{{project}}, got {name!r}")
        clauses = _parse_filter(str(body.get("filter") or ""))
        metric = clauses.pop("metric.type", None)
        if metric not in METRICS:
            raise ListError("INVALID_ARGUMENT", f"unknown or missing metric.type {metric!r}")
        interval = body.get("interval") or {}
        if not interval.get("endTime"):
            raise ListError("INVALID_ARGUMENT", "interval.endTime is required")
        end = _time(interval["endTime"])
        start = _time(interval["startTime"]) if interval.get("startTime") else end
        if start > end:
            raise ListError("INVALID_ARGUMENT", "interval.startTime must not be after interval.endTime")
        aggregation = body.get("aggregation") or {}
        aligner = aggregation.get("perSeriesAligner", "ALIGN_NONE")
        reducer = aggregation.get("crossSeriesReducer", "REDUCE_NONE")
        group_by = list(aggregation.get("groupByFields") or [])
        period = _seconds(aggregation.get("alignmentPeriod"))
        if aligner != "ALIGN_NONE" and period is None:
            raise ListError("INVALID_ARGUMENT", "aggregation.alignmentPeriod is required with a perSeriesAligner")
        if period is not None and period < MIN_ALIGNMENT_S:
            raise ListError("INVALID_ARGUMENT", f"aggregation.alignmentPeriod must be at least {MIN_ALIGNMENT_S}s")
        if reducer != "REDUCE_NONE" and aligner == "ALIGN_NONE":
            raise ListError("INVALID_ARGUMENT", "a crossSeriesReducer needs a perSeriesAligner")
        if group_by and reducer == "REDUCE_NONE":
            raise ListError("INVALID_ARGUMENT", "groupByFields needs a crossSeriesReducer")
        if aligner == "ALIGN_NONE":
            raise ListError("UNIMPLEMENTED", "the emulator answers aligned and reduced queries only")
        for field in group_by:
            if field not in _GROUPS[metric]:
                raise ListError("INVALID_ARGUMENT", f"cannot group {metric} by {field!r}")
        assert period is not None
        if metric in (MEMORY_UTILIZATIONS, INSTANCE_COUNT):
            return {
                "timeSeries": self._container_series(metric, clauses, start, end, period, aligner, reducer, group_by)
            }
        if metric == REQUEST_COUNT and (aligner not in _COUNT_ALIGNERS or reducer not in ("REDUCE_SUM",)):
            raise ListError("INVALID_ARGUMENT", f"{aligner} / {reducer} does not suit {metric} (DELTA, INT64)")
        if metric == REQUEST_LATENCIES and (aligner != "ALIGN_DELTA" or reducer not in _LATENCY_REDUCERS):
            raise ListError("INVALID_ARGUMENT", f"{aligner} / {reducer} does not suit {metric} (DELTA, DISTRIBUTION)")
        served = [s for s in self._matching(clauses) if start < s.at <= end]
        return {"timeSeries": self._series(metric, served, start, end, period, group_by, reducer)}

    def _container_series(
        self,
        metric: str,
        clauses: dict[str, str],
        start: datetime,
        end: datetime,
        period: float,
        aligner: str,
        reducer: str,
        group_by: list[str],
    ) -> list[dict[str, Any]]:
        """Memory utilisation (a DISTRIBUTION per revision) and instance count (a GAUGE per
        revision and state), aligned per period and reduced across series as the API does."""
        # Validity as the Aligner / Reducer docs give it (google/monitoring/v3/common.proto).
        numeric_reducers = (*_NUMBER_REDUCERS, *_LATENCY_REDUCERS, "REDUCE_NONE")
        if metric == MEMORY_UTILIZATIONS:
            if aligner in ("ALIGN_DELTA", "ALIGN_SUM"):  # these keep the DISTRIBUTION
                if aligner == "ALIGN_SUM" or reducer in ("REDUCE_SUM", "REDUCE_NONE"):
                    raise ListError("UNIMPLEMENTED", "the emulator does not return distribution values")
                if reducer not in _LATENCY_REDUCERS:
                    raise ListError("INVALID_ARGUMENT", f"ALIGN_DELTA / {reducer} does not suit {metric}")
            elif aligner not in _DISTRIBUTION_ALIGNERS:  # no MAX, MIN, MEAN, COUNT or RATE of a distribution
                raise ListError("INVALID_ARGUMENT", f"{aligner} does not suit {metric} (DELTA, DISTRIBUTION)")
            elif reducer not in numeric_reducers:
                raise ListError("INVALID_ARGUMENT", f"{reducer} does not suit {aligner} of {metric}")
        else:
            if aligner not in _GAUGE_ALIGNERS:  # no DELTA or RATE of a GAUGE, no percentile of a number
                raise ListError("INVALID_ARGUMENT", f"{aligner} does not suit {metric} (GAUGE, INT64)")
            if reducer not in numeric_reducers:
                raise ListError("INVALID_ARGUMENT", f"{reducer} does not suit {metric} (GAUGE, INT64)")
        for field, value in clauses.items():
            allowed = {
                "resource.type": "cloud_run_revision",
                "resource.labels.service_name": self.service,
                "resource.labels.location": self.region,
                "resource.labels.project_id": self.project,
            }
            if field in allowed:
                if allowed[field] != value:
                    return []
            elif field not in ("resource.labels.revision_name", "metric.labels.state") or (
                field == "metric.labels.state" and metric != INSTANCE_COUNT
            ):
                raise ListError("INVALID_ARGUMENT", f"the filter cannot compare {field!r} for {metric}")
        with self._state_lock:
            samples = list(self._memory if metric == MEMORY_UTILIZATIONS else self._instances)
        samples = [s for s in samples if start < s.at <= end]
        if "resource.labels.revision_name" in clauses:
            samples = [s for s in samples if s.revision == clauses["resource.labels.revision_name"]]
        if "metric.labels.state" in clauses:
            samples = [s for s in samples if s.state == clauses["metric.labels.state"]]

        def key(s: Sample, fields: Any) -> tuple[str, ...]:
            return tuple(s.state if f == "metric.labels.state" else s.revision for f in fields)

        series_fields = ("resource.labels.revision_name",) + (
            ("metric.labels.state",) if metric == INSTANCE_COUNT else ()
        )
        result = []
        out_groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        upper = end
        while upper > start:
            lower = max(start, upper - timedelta(seconds=period))
            inside = [s for s in samples if lower < s.at <= upper]
            span = {"startTime": _rfc3339(lower), "endTime": _rfc3339(upper)}
            groups: dict[tuple[str, ...], dict[tuple[str, ...], list[float]]] = {}
            for s in inside:
                outer = key(s, group_by) if reducer != "REDUCE_NONE" else key(s, series_fields)
                groups.setdefault(outer, {}).setdefault(key(s, series_fields), []).append(s.value)
            for outer, per_series in groups.items():
                if metric == MEMORY_UTILIZATIONS and aligner == "ALIGN_DELTA":
                    pooled = sorted(v for values in per_series.values() for v in values)
                    number = _percentile(pooled, _LATENCY_REDUCERS[reducer])
                else:
                    aligned = [_align(aligner, values) for values in per_series.values()]
                    number = _reduce(reducer, aligned)
                typed: dict[str, Any] = {"doubleValue": number}
                if metric == INSTANCE_COUNT and aligner != "ALIGN_MEAN" and reducer in _INTEGER_REDUCERS:
                    typed = {"int64Value": str(int(number))}
                out_groups.setdefault(outer, []).append({"interval": span, "value": typed})
            upper = lower
        fields = group_by if reducer != "REDUCE_NONE" else list(series_fields)
        for outer, points in sorted(out_groups.items()):
            labels = {f.rsplit(".", 1)[-1]: v for f, v in zip(fields, outer, strict=True)}
            resource_labels = {"project_id": self.project, "service_name": self.service, "location": self.region}
            if "revision_name" in labels:
                resource_labels["revision_name"] = labels["revision_name"]
            integer = "int64Value" in points[0]["value"]
            result.append(
                {
                    "metric": {"type": metric, "labels": {k: v for k, v in labels.items() if k == "state"}},
                    "resource": {"type": "cloud_run_revision", "labels": resource_labels},
                    "metricKind": "GAUGE" if metric == INSTANCE_COUNT else "DELTA",
                    "valueType": "INT64" if integer else "DOUBLE",
                    "points": points,
                }
            )
        return result

    def _matching(self, clauses: dict[str, str]) -> list[Served]:
        labels = {"resource.labels.service_name": self.service, "resource.labels.location": self.region}
        labels["resource.labels.project_id"] = self.project
        for field, value in clauses.items():
            if field == "resource.type":
                if value != "cloud_run_revision":
                    return []
            elif field in labels:
                if labels[field] != value:
                    return []
            elif field not in ("resource.labels.revision_name", "metric.labels.response_code_class"):
                raise ListError("INVALID_ARGUMENT", f"the filter cannot compare {field!r}")
        with self._state_lock:
            served = list(self._served)
        if "resource.labels.revision_name" in clauses:
            served = [s for s in served if s.revision == clauses["resource.labels.revision_name"]]
        if "metric.labels.response_code_class" in clauses:
            served = [s for s in served if _code_class(s.status) == clauses["metric.labels.response_code_class"]]
        return served

    def _series(
        self,
        metric: str,
        served: list[Served],
        start: datetime,
        end: datetime,
        period: float,
        group_by: list[str],
        reducer: str,
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[str, ...], list[Served]] = {}
        for s in served:
            key = tuple(_group_value(s, f) for f in group_by)
            groups.setdefault(key, []).append(s)
        result = []
        for key, members in sorted(groups.items()):
            points: list[dict[str, Any]] = []
            # Periods end at endTime and go back one alignment period at a time.
            upper = end
            while upper > start:
                lower = max(start, upper - timedelta(seconds=period))
                inside = [s for s in members if lower < s.at <= upper]
                if inside:
                    span = {"startTime": _rfc3339(lower), "endTime": _rfc3339(upper)}
                    if metric == REQUEST_COUNT:
                        points.append({"interval": span, "value": {"int64Value": str(len(inside))}})
                    else:
                        rank = _LATENCY_REDUCERS[reducer]
                        p = _percentile(sorted(s.latency_ms for s in inside), rank)
                        points.append({"interval": span, "value": {"doubleValue": p}})
                upper = lower
            labels: dict[str, str] = {}
            for field, label in zip(group_by, key, strict=True):
                labels[field.rsplit(".", 1)[-1]] = label
            metric_labels = {k: v for k, v in labels.items() if k in ("response_code_class", "response_code")}
            resource_labels = {"project_id": self.project, "service_name": self.service, "location": self.region}
            if "revision_name" in labels:
                resource_labels["revision_name"] = labels["revision_name"]
            result.append(
                {
                    "metric": {"type": metric, "labels": metric_labels},
                    "resource": {"type": "cloud_run_revision", "labels": resource_labels},
                    "metricKind": "DELTA",
                    "valueType": "INT64" if metric == REQUEST_COUNT else "DOUBLE",
                    "points": copy.deepcopy(points),
                }
            )
        return result


def _parse_filter(text: str) -> dict[str, str]:
    clauses: dict[str, str] = {}
    for part in re.split(r"\s+AND\s+", text.strip()) if text.strip() else []:
        match = _CLAUSE.match(part)
        if not match:
            raise ListError("INVALID_ARGUMENT", f'unsupported filter clause {part!r} (field = "value" AND ...)')
        field = match["field"]
        if field != "metric.type" and not field.startswith(("resource.type", "resource.labels.", "metric.labels.")):
            raise ListError("INVALID_ARGUMENT", f"the filter cannot compare {field!r}")
        if field in clauses:
            raise ListError("INVALID_ARGUMENT", f"{field} appears twice")
        clauses[field] = match["value"]
    return clauses


def _align(aligner: str, values: list[float]) -> float:
    if aligner in _DISTRIBUTION_ALIGNERS:
        return _percentile(sorted(values), _DISTRIBUTION_ALIGNERS[aligner])
    if aligner == "ALIGN_MAX":
        return max(values)
    if aligner == "ALIGN_MIN":
        return min(values)
    if aligner == "ALIGN_SUM":
        return sum(values)
    return sum(values) / len(values)  # ALIGN_MEAN


def _reduce(reducer: str, values: list[float]) -> float:
    if reducer == "REDUCE_MAX":
        return max(values)
    if reducer == "REDUCE_MIN":
        return min(values)
    if reducer == "REDUCE_MEAN":
        return sum(values) / len(values)
    if reducer in _LATENCY_REDUCERS:
        return _percentile(sorted(values), _LATENCY_REDUCERS[reducer])
    return sum(values)  # REDUCE_SUM, or REDUCE_NONE (one series)


def _group_value(served: Served, field: str) -> str:
    if field == "metric.labels.response_code_class":
        return _code_class(served.status)
    if field == "metric.labels.response_code":
        return str(served.status)
    return served.revision


def _code_class(status: int) -> str:
    return f"{status // 100}xx"


def _percentile(values: list[float], rank: int) -> float:
    if not values:
        return 0.0
    index = max(0, math.ceil(rank / 100 * len(values)) - 1)
    return float(values[index])


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    text = str(value)
    return float(text[:-1]) if text.endswith("s") else float(text)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
