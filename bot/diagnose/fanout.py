"""`/incident diagnose`: the runbook's first checks, run in parallel, then named as a scenario.

Two halves. `diagnose()` fans out to six sources (service, revisions, errors, requests,
signals, health), each in its own thread with its own timeout, and summarises what each
returned into a frozen finding; a source that fails or is slow is recorded as such and never
hides the others. `triage()` is pure: rules, one small function each, map the findings of a
`Report` to the runbook's scenarios with a reason that carries the numbers.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.domain.capacity import CapacityFinding
from bot.domain.findings import (
    ERROR_SEVERITIES,
    REVISIONS_SHOWN,
    SOURCE_NAMES,
    WINDOW,
    ErrorsFinding,
    Finding,
    NotConfigured,
    Report,
    RequestsFinding,
    RevisionsFinding,
    ServiceFinding,
    SignalsFinding,
    SourceError,
    SourceResult,
    _one_line,
    answers_triage,
    summarise_errors,
    summarise_requests,
    summarise_signals,
)
from bot.domain.service import HealthResult, LogRecord, ServiceRef
from bot.google.cloud import CloudSources

DEFAULT_TIMEOUT_S = 8.0
PROBLEM_MAX_ENTRIES = 2000  # warnings and errors: two pages of Cloud Logging
REQUEST_MAX_ENTRIES = 5000  # request logs: five pages


# What each source reads, in the words of the console and the docs.
SOURCE_APIS = {
    "service": "Cloud Run API",
    "revisions": "Cloud Run API",
    "errors": "Cloud Logging",
    "requests": "Cloud Logging",
    "signals": "Cloud Logging",
    "capacity": "Cloud Monitoring",
    "health": "Health endpoint",
}

# -- findings ---------------------------------------------------------------------------------


# -- the fan-out ------------------------------------------------------------------------------

SourceFn = Callable[[CloudSources, ServiceRef, datetime, float], Finding]


def diagnose(
    sources: CloudSources,
    service: ServiceRef,
    now: datetime,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    timeouts: Mapping[str, float] | None = None,
    only: Iterable[str] | None = None,
) -> Report:
    """Run every source in parallel, each bounded by its timeout, and collect a Report."""
    names = [n for n in SOURCE_NAMES if only is None or n in set(only)]
    limits = {n: (timeouts or {}).get(n, timeout_s) for n in names}
    tasks = {name: _bind(SOURCES[name], sources, service, now, limits[name]) for name in names}
    started = time.perf_counter()
    results = fan_out(tasks, limits)
    return Report(service, now, results, elapsed_s=time.perf_counter() - started)


def _bind(fn: SourceFn, sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> Callable[[], Any]:
    return lambda: fn(sources, ref, now, timeout_s)


@dataclass
class _Slot:
    started: float | None = None
    finished: float | None = None
    value: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def fan_out(tasks: Mapping[str, Callable[[], Any]], timeouts: Mapping[str, float]) -> tuple[SourceResult, ...]:
    """Run each task on its own thread; wait for each no longer than its timeout.

    Results come back in the order of `tasks`. A task still running at its deadline is
    reported as a timeout and left to finish on its own (its I/O has a timeout too).
    """
    if not tasks:
        return ()
    origin = time.perf_counter()
    slots = {name: _Slot() for name in tasks}
    pool = ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="diagnose")
    try:
        futures = {name: pool.submit(_run, task, slots[name]) for name, task in tasks.items()}
        results = []
        for name, future in futures.items():
            limit = timeouts[name]
            remaining = origin + limit - time.perf_counter()
            with contextlib.suppress(FutureTimeout):
                future.result(timeout=max(remaining, 0.0))
            results.append(_result(name, slots[name], origin, limit))
        return tuple(results)
    finally:
        # Never wait for stragglers: a hung source must not hold the report.
        pool.shutdown(wait=False, cancel_futures=True)


def _run(task: Callable[[], Any], slot: _Slot) -> None:
    slot.started = time.perf_counter()
    try:
        slot.value = task()
    except Exception as exc:  # any failure of one source is data for the report
        slot.error = exc
    finally:
        slot.finished = time.perf_counter()
        slot.done.set()


def _result(name: str, slot: _Slot, origin: float, limit: float) -> SourceResult:
    started = None if slot.started is None else slot.started - origin
    if not slot.done.is_set():
        return SourceResult(
            name,
            started,
            time.perf_counter() - origin,
            error=SourceError("timeout", "Timeout", f"no answer within {limit:g} s", _timed_out(limit)),
        )
    finished = (slot.finished or origin) - origin
    if slot.error is not None:
        error = describe_error(slot.error, name)
        if error.kind == "timeout":
            # The client's own timeout fired first; say it the same way as ours.
            error = SourceError("timeout", error.type_name, f"no answer within {limit:g} s", _timed_out(limit))
        return SourceResult(name, started, finished, error=error)
    return SourceResult(name, started, finished, finding=slot.value)


_TIMEOUT_TYPES = {
    "Timeout",
    "TimeoutError",
    "ReadTimeout",
    "ConnectTimeout",
    "ReadTimeoutError",
    "DeadlineExceeded",
    "RetryError",
}
# HTTP status (google.api_core errors carry it as `.code`, gRPC ones too) -> what it means.
_STATUS_WORDS = {
    400: "request refused (400)",
    401: "not authenticated (401)",
    403: "permission denied",
    404: "not found",
    429: "quota exceeded (429)",
}


def describe_error(error: BaseException, source: str = "") -> SourceError:
    """Error class, a one-line message and a summary in a responder's words; timeouts, however
    wrapped, say so."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 5:
        chain.append(current)
        reason = getattr(current, "reason", None)
        current = current.__cause__ or (reason if isinstance(reason, BaseException) else None)
    names = {cls.__name__ for exc in chain for cls in type(exc).__mro__}
    message = _one_line(str(error))
    kind = "timeout" if names & _TIMEOUT_TYPES or "timed out" in message else "error"
    return SourceError(kind, type(error).__name__, message, _summary(error, chain, kind, source))


def _summary(error: BaseException, chain: Sequence[BaseException], kind: str, source: str) -> str:
    api = SOURCE_APIS.get(source, "the source")
    if kind == "timeout":
        return "timed out"
    if isinstance(error, NotConfigured):
        return str(error)
    status = getattr(error, "code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 600:
        if status >= 500:
            return f"{api} unavailable ({status})"
        return f"{api}: {_STATUS_WORDS.get(status, f'refused ({status})')}"
    errno_names = {type(exc).__name__ for exc in chain}
    if "ConnectionRefusedError" in errno_names or "refused" in " ".join(str(e) for e in chain).lower():
        return f"{api} unreachable (connection refused)"
    if "gaierror" in errno_names:
        return f"{api} unreachable (unknown host)"
    return f"{api} failed"


def _timed_out(limit: float) -> str:
    return f"timed out after {limit:g} s"


# -- sources: fetch through the adapter, then summarise (pure) -------------------------------


def read_service(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> ServiceFinding:
    return ServiceFinding(sources.get_service(ref, timeout_s=timeout_s))


def read_revisions(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> RevisionsFinding:
    revisions = sources.list_revisions(ref, limit=REVISIONS_SHOWN, enough=answers_triage, timeout_s=timeout_s)
    return RevisionsFinding(tuple(revisions))


# Cloud Logging is asked two questions per diagnosis, each once, whichever sources need the
# answer: what went wrong (warnings and worse: errors and signals), and how traffic went (the
# request log). Diagnoses of the same service within a few seconds share both answers
# (CloudSources.log_reads).


def log_condition(ref: ServiceRef, question: str) -> str:
    """The filter clause for one question (appended to the service and time bounds)."""
    if question == "problems":
        return "severity>=WARNING"
    if question == "requests":
        return f'logName="projects/{ref.project}/logs/run.googleapis.com%2Frequests"'
    raise ValueError(f"unknown log question {question!r}")


def read_logs(
    sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float, question: str
) -> tuple[list[LogRecord], bool]:
    """The WINDOW before `now` of one question's entries, and whether more were left unread."""
    since = now - WINDOW
    limit = PROBLEM_MAX_ENTRIES if question == "problems" else REQUEST_MAX_ENTRIES

    def fetch() -> tuple[list[LogRecord], bool]:
        return sources.query_logs(ref, since, log_condition(ref, question), max_entries=limit, timeout_s=timeout_s)

    def covers(asked_since: datetime) -> bool:
        # An answer from a few seconds ago lacks only the newest seconds; one asked later
        # than this caller's window start would lack its oldest minutes.
        return asked_since <= since <= asked_since + timedelta(seconds=sources.log_reads.ttl_s)

    records, sampled = sources.log_reads.get((ref.path, question), since, fetch, covers)
    return [r for r in records if r.timestamp >= since], sampled


def read_errors(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> ErrorsFinding:
    records, sampled = read_logs(sources, ref, now, timeout_s, "problems")
    errors = [r for r in records if r.severity in ERROR_SEVERITIES]
    return summarise_errors(errors, now - WINDOW, sampled)


def read_requests(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> RequestsFinding:
    records, sampled = read_logs(sources, ref, now, timeout_s, "requests")
    return summarise_requests(records, now, sampled)


def read_signals(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> SignalsFinding:
    records, sampled = read_logs(sources, ref, now, timeout_s, "problems")
    return summarise_signals(records, sampled)


MONITORING_SHARE = 0.75  # of the source's timeout: the rest is left for saying "fell back to the logs"


def read_capacity(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> CapacityFinding:
    """Memory, instances and traffic per minute over the WINDOW (Scenario 8 and 9), from Cloud
    Monitoring; when it cannot answer in time the finding says the log signals stand in."""
    return sources.capacity(ref, now - WINDOW, now, timeout_s=timeout_s * MONITORING_SHARE)


def read_health(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> HealthResult:
    if not ref.health_url:
        raise NotConfigured("no service.health_url in the config")
    return sources.probe_health(ref.health_url, timeout_s=timeout_s)


SOURCES: dict[str, SourceFn] = {
    "service": read_service,
    "revisions": read_revisions,
    "errors": read_errors,
    "requests": read_requests,
    "signals": read_signals,
    "capacity": read_capacity,
    "health": read_health,
}


# -- triage -----------------------------------------------------------------------------------


# -- small pure helpers -----------------------------------------------------------------------
