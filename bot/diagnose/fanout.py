"""`/incident diagnose`: the runbook's first checks, run in parallel, then named as a scenario.

Two halves. `diagnose()` fans out to six sources (service, revisions, errors, requests,
signals, health), each in its own thread with its own timeout, and summarises what each
returned into a frozen finding; a source that fails or is slow is recorded as such and never
hides the others. `triage()` is pure: rules, one small function each, map the findings of a
`Report` to the runbook's scenarios with a reason that carries the numbers.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.domain import proposals
from bot.google.cloud import (
    CloudSources,
    HealthResult,
    LogRecord,
    RevisionState,
    ServiceRef,
    ServiceState,
    TrafficShare,
)

DEFAULT_TIMEOUT_S = 8.0
WINDOW = timedelta(minutes=15)  # how far back the log sources look
RECENT = timedelta(minutes=5)  # the runbook's alerts speak of "for 5 minutes"
REVISIONS_SHOWN = 5
TOP = 5  # rows per grouping
MESSAGE_CHARS = 160
PROBLEM_MAX_ENTRIES = 2000  # warnings and errors: two pages of Cloud Logging
REQUEST_MAX_ENTRIES = 5000  # request logs: five pages
ERROR_SEVERITIES = frozenset({"ERROR", "CRITICAL", "ALERT", "EMERGENCY"})

# Thresholds, from the runbook's alert triggers where it has one.
P1_ERROR_RATE = 0.10  # Scenario 1 / P1: error rate > 10 %
P2_ERROR_RATE = 0.05  # Scenario 2: error rate 5-10 %
SLOW_P95_MS = 1000.0  # Scenario 3: p95 > 1000 ms
MIN_REQUESTS = 20  # fewer requests than this make a rate or a percentile meaningless
MIN_ERRORS = 5
DEPLOY_RECENT = timedelta(minutes=30)  # older deploys are not "what just changed"
DEPLOY_TO_ERRORS = timedelta(minutes=10)  # errors beginning later are likely unrelated
ONSET_BURST = 3  # errors in one minute that mark the start of trouble, not noise
ERROR_JUMP = 3.0  # error rate after a deploy vs before it
RESTARTS_MIN = 3
DEPENDENCY_MIN = 3  # in 15 min: the runbook alerts on "more than 10 an hour"
RATE_LIMITED_MIN = 20
RATE_LIMITED_SHARE = 0.05
CLUSTER_SHARE = 0.8
CASCADE_CAUSES = 3

SOURCE_NAMES = ("service", "revisions", "errors", "requests", "signals", "health")
# What each source reads, in the words of the console and the docs.
SOURCE_APIS = {
    "service": "Cloud Run API",
    "revisions": "Cloud Run API",
    "errors": "Cloud Logging",
    "requests": "Cloud Logging",
    "signals": "Cloud Logging",
    "health": "Health endpoint",
}

# -- findings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceFinding:
    state: ServiceState

    @property
    def serving(self) -> TrafficShare | None:
        """The revision with the largest share of traffic."""
        return max(self.state.traffic, key=lambda t: t.percent, default=None)

    @property
    def rollout_pending(self) -> bool:
        return self.state.latest_created_revision != self.state.latest_ready_revision


@dataclass(frozen=True)
class RevisionsFinding:
    revisions: tuple[RevisionState, ...]  # newest first

    def get(self, name: str) -> RevisionState | None:
        return next((r for r in self.revisions if r.name == name), None)

    def last_healthy_before(self, name: str) -> RevisionState | None:
        """The newest Ready revision created before `name`: the rollback target."""
        return proposals.last_healthy_before(self.revisions, name)


@dataclass(frozen=True)
class ErrorsFinding:
    window_start: datetime
    count: int
    sampled: bool  # True when there were more entries than were read
    times: tuple[datetime, ...]  # oldest first
    top_messages: tuple[tuple[str, int], ...] = ()
    by_path: tuple[tuple[str, int], ...] = ()  # the TOP busiest
    by_error_code: tuple[tuple[str, int], ...] = ()
    by_revision: tuple[tuple[str, int], ...] = ()
    by_path_all: tuple[tuple[str, int], ...] = ()  # every path, busiest first

    @property
    def with_path(self) -> int:
        """Entries that name a request path (request logs and most application errors)."""
        return sum(n for _, n in self.by_path_all)


@dataclass(frozen=True)
class RequestStats:
    total: int
    server_errors: int  # 5xx
    rate_limited: int  # 429
    p50_ms: float | None
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.server_errors / self.total if self.total else None


@dataclass(frozen=True)
class RequestsFinding:
    recent: RequestStats  # the last RECENT
    window: RequestStats  # the whole WINDOW
    by_path: tuple[tuple[str, int, int], ...]  # (path, requests, 5xx), busiest first
    sampled: bool

    def path_share(self, path: str) -> float | None:
        total = sum(n for _, n, _ in self.by_path)
        hits = next((n for p, n, _ in self.by_path if p == path), 0)
        return hits / total if total else None


@dataclass(frozen=True)
class Upstream:
    name: str  # Pub/Sub, Firestore, Stripe
    count: int
    timeouts: int
    sample: str


@dataclass(frozen=True)
class SignalsFinding:
    oom: int
    oom_sample: str
    restarts: int
    restart_sample: str
    rate_limited: int  # HTTP 429 answers
    upstream: tuple[Upstream, ...]
    sampled: bool = False

    def dependency(self, name: str) -> Upstream | None:
        return next((u for u in self.upstream if u.name == name), None)


Finding = ServiceFinding | RevisionsFinding | ErrorsFinding | RequestsFinding | SignalsFinding | HealthResult


@dataclass(frozen=True)
class SourceError:
    kind: str  # "timeout" or "error"
    type_name: str  # exception class, or "Timeout": for logs and rules, never shown to people
    message: str
    summary: str = ""  # what a responder reads: "Cloud Logging unavailable (500)"

    def __str__(self) -> str:
        if self.summary:
            return self.summary
        return f"{self.type_name}: {self.message}" if self.message else self.type_name


@dataclass(frozen=True)
class SourceResult:
    """One source's outcome; times are seconds since the fan-out began."""

    name: str
    started_s: float | None  # None: it never got a thread
    finished_s: float
    finding: Any = None
    error: SourceError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def elapsed_s(self) -> float:
        return self.finished_s - (self.started_s or 0.0)


@dataclass(frozen=True)
class Serving:
    revision: str
    percent: int
    live_at: datetime | None
    age: timedelta | None
    image: str = ""


@dataclass(frozen=True)
class Report:
    target: ServiceRef
    now: datetime
    results: tuple[SourceResult, ...]
    elapsed_s: float = 0.0

    def result(self, name: str) -> SourceResult | None:
        return next((r for r in self.results if r.name == name), None)

    def _finding(self, name: str, kind: type) -> Any:
        found = self.result(name)
        return found.finding if found and isinstance(found.finding, kind) else None

    @property
    def service(self) -> ServiceFinding | None:
        return self._finding("service", ServiceFinding)

    @property
    def revisions(self) -> RevisionsFinding | None:
        return self._finding("revisions", RevisionsFinding)

    @property
    def errors(self) -> ErrorsFinding | None:
        return self._finding("errors", ErrorsFinding)

    @property
    def requests(self) -> RequestsFinding | None:
        return self._finding("requests", RequestsFinding)

    @property
    def signals(self) -> SignalsFinding | None:
        return self._finding("signals", SignalsFinding)

    @property
    def health(self) -> HealthResult | None:
        return self._finding("health", HealthResult)

    @property
    def failed(self) -> tuple[SourceResult, ...]:
        return tuple(r for r in self.results if not r.ok)

    @property
    def serving(self) -> Serving | None:
        """The revision taking most traffic and when it went live (needs service+revisions)."""
        service = self.service
        share = service.serving if service else None
        if share is None:
            return None
        revision = self.revisions.get(share.revision) if self.revisions else None
        live_at = (revision.ready_since or revision.created_at) if revision else None
        updated = service.state.updated_at if service else None
        if not share.latest and live_at and updated and updated > live_at:
            # Traffic pinned to an older revision (a rollback) moved there at the last update.
            live_at = updated
        return Serving(
            revision=share.revision,
            percent=share.percent,
            live_at=live_at,
            age=self.now - live_at if live_at else None,
            image=revision.image if revision else "",
        )

    @property
    def last_healthy_revision(self) -> str | None:
        serving = self.serving
        if serving is None or self.revisions is None:
            return None
        found = self.revisions.last_healthy_before(serving.revision)
        return found.name if found else None


# -- the fan-out ------------------------------------------------------------------------------

SourceFn = Callable[[CloudSources, ServiceRef, datetime, float], Finding]


class NotConfigured(Exception):
    """The source has nothing to query (e.g. no health_url in the config)."""


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


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


# -- sources: fetch through the adapter, then summarise (pure) -------------------------------


def read_service(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> ServiceFinding:
    return ServiceFinding(sources.get_service(ref, timeout_s=timeout_s))


def read_revisions(sources: CloudSources, ref: ServiceRef, now: datetime, timeout_s: float) -> RevisionsFinding:
    revisions = sources.list_revisions(ref, limit=REVISIONS_SHOWN, timeout_s=timeout_s)
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
    "health": read_health,
}


def summarise_errors(records: Sequence[LogRecord], window_start: datetime, sampled: bool = False) -> ErrorsFinding:
    messages = Counter(_normalise(r.message) for r in records if r.message)
    paths = Counter(_path_label(r) for r in records if r.path)
    codes = Counter(r.error_code for r in records if r.error_code)
    revisions = Counter(r.revision for r in records if r.revision)
    return ErrorsFinding(
        window_start=window_start,
        count=len(records),
        sampled=sampled,
        times=tuple(sorted(r.timestamp for r in records)),
        top_messages=tuple(messages.most_common(TOP)),
        by_path=tuple(paths.most_common(TOP)),
        by_error_code=tuple(codes.most_common(TOP)),
        by_revision=tuple(revisions.most_common(TOP)),
        by_path_all=tuple(paths.most_common()),
    )


def summarise_requests(records: Sequence[LogRecord], now: datetime, sampled: bool = False) -> RequestsFinding:
    requests = [r for r in records if r.http and r.http.status is not None]
    recent = [r for r in requests if r.timestamp >= now - RECENT]
    per_path: dict[str, list[int]] = {}
    for r in requests:
        counts = per_path.setdefault(_path_label(r), [0, 0])
        counts[0] += 1
        counts[1] += _is_5xx(r)
    by_path = sorted(((p, n, e) for p, (n, e) in per_path.items()), key=lambda t: -t[1])
    return RequestsFinding(
        recent=_stats(recent),
        window=_stats(requests),
        by_path=tuple(by_path),
        sampled=sampled,
    )


def _stats(requests: Sequence[LogRecord]) -> RequestStats:
    latencies = sorted(r.http.latency_ms for r in requests if r.http and r.http.latency_ms is not None)
    return RequestStats(
        total=len(requests),
        server_errors=sum(_is_5xx(r) for r in requests),
        rate_limited=sum(1 for r in requests if r.http and r.http.status == 429),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
    )


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without floats drifting
    return round(sorted_values[int(rank) - 1], 1)


_OOM = re.compile(r"memory limit of .* exceeded|out of memory|\boom\b|out_of_memory", re.I)
_RESTART = re.compile(
    r"container (?:terminated|called exit)|terminated on signal|exited with code|"
    r"instance (?:crashed|restarted)|crashloop",
    re.I,
)
_TIMEOUT_WORDS = re.compile(r"time(?:d)?\s?out|deadline exceeded", re.I)
_FAILURE_WORDS = re.compile(r"time(?:d)?\s?out|deadline|unavailable|refused|reset|fail|error|exception|\b5\d\d\b", re.I)
# Not preceded by "/" or a letter, so the request path /pubsub is not the Pub/Sub service.
DEPENDENCIES = (
    ("Pub/Sub", re.compile(r"(?<![/\w])pub\s*/?\s*sub", re.I)),
    ("Firestore", re.compile(r"(?<![/\w])(?:firestore|datastore)", re.I)),
    ("Stripe", re.compile(r"(?<![/\w])stripe", re.I)),
)


def summarise_signals(records: Sequence[LogRecord], sampled: bool = False) -> SignalsFinding:
    oom = [r for r in records if _OOM.search(r.message) or r.error_code == "out_of_memory"]
    restarts = [r for r in records if _RESTART.search(r.message)]
    upstream = []
    for name, pattern in DEPENDENCIES:
        hits = [r for r in records if pattern.search(r.message) and _FAILURE_WORDS.search(r.message)]
        if hits:
            timeouts = sum(1 for r in hits if _TIMEOUT_WORDS.search(r.message))
            upstream.append(Upstream(name, len(hits), timeouts, _one_line(hits[0].message)))
    return SignalsFinding(
        oom=len(oom),
        oom_sample=_one_line(oom[0].message) if oom else "",
        restarts=len(restarts),
        restart_sample=_one_line(restarts[0].message) if restarts else "",
        rate_limited=sum(1 for r in records if r.http and r.http.status == 429),
        upstream=tuple(upstream),
        sampled=sampled,
    )


def _is_5xx(record: LogRecord) -> bool:
    return bool(record.http and record.http.status and record.http.status >= 500)


def _path_label(record: LogRecord) -> str:
    # Path only: application logs know the path but not the method.
    return record.path


_NUMBERS = re.compile(r"\b[0-9a-f]{8,}\b|\b\d+\b")


def _normalise(message: str) -> str:
    # Group "timeout after 5012 ms" with "timeout after 4990 ms".
    return _one_line(_NUMBERS.sub("N", message))


# -- triage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """A runbook scenario the findings point to, and why."""

    scenario: str  # "1A", "1B", "2" ... "11"
    title: str
    confidence: float  # 0..1
    reason: str
    rollback_revision: str | None = None
    next_step: str = ""

    @property
    def runbook_number(self) -> int:
        """The runbook section: 1 for "1A"."""
        return int(self.scenario.rstrip("ABCD"))

    @property
    def confidence_label(self) -> str:
        return "high" if self.confidence >= 0.8 else "medium" if self.confidence >= 0.6 else "low"


@dataclass(frozen=True)
class SeverityHint:
    current: str
    suggested: str
    reason: str


@dataclass(frozen=True)
class Triage:
    matches: tuple[Match, ...]  # most confident first
    severity_hint: SeverityHint | None = None

    @property
    def likely(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def rollback(self) -> Match | None:
        return next((m for m in self.matches if m.rollback_revision), None)


Rule = Callable[[Report], Match | None]


def bad_deployment(report: Report) -> Match | None:
    """1A: the serving revision went live shortly before errors began."""
    serving, errors = report.serving, report.errors
    if not serving or not serving.live_at or not serving.age or not errors:
        return None
    if serving.age > DEPLOY_RECENT:
        return None
    before = [t for t in errors.times if t < serving.live_at]
    after = [t for t in errors.times if t >= serving.live_at]
    if len(after) < MIN_ERRORS:
        return None
    minutes_before = max((serving.live_at - errors.window_start).total_seconds() / 60, 1.0)
    minutes_after = max(serving.age.total_seconds() / 60, 1.0)
    rate_before, rate_after = len(before) / minutes_before, len(after) / minutes_after
    if rate_after < ERROR_JUMP * max(rate_before, 0.2):
        return None
    onset = _onset(after)
    lag = onset - serving.live_at
    if lag > DEPLOY_TO_ERRORS:
        return None
    previous = report.last_healthy_revision
    rate = _recent_rate_text(report)
    reason = (
        f"Revision {serving.revision} went live {span_text(serving.age)} ago, "
        f"{span_text(lag)} before errors started: {len(after)} error entries since, "
        f"{len(before)} in the {minutes_before:.0f} min before{rate}."
    )
    if previous:
        reason += f" Last healthy revision: {previous}."
        step = f"Roll back to {previous}: press Roll back to propose it; an allowed person confirms"
    else:
        reason += " No earlier healthy revision found to roll back to."
        step = "Find the last good revision: gcloud run revisions list"
    confidence = 0.9 if lag <= timedelta(minutes=5) else 0.75
    return Match(
        "1A",
        "Bad deployment",
        confidence if previous else confidence - 0.15,
        reason,
        rollback_revision=previous,
        next_step=step,
    )


def crash_restarts(report: Report) -> Match | None:
    """1B: containers are restarting or being killed for memory."""
    signals = report.signals
    if not signals or (signals.restarts < RESTARTS_MIN and signals.oom == 0):
        return None
    reason = (
        f"{signals.restarts} container restarts and {signals.oom} memory-limit messages "
        f"in the last {_minutes(WINDOW)} min"
    )
    sample = signals.restart_sample or signals.oom_sample
    confidence = 0.8 if signals.restarts >= RESTARTS_MIN and signals.oom else 0.6
    return Match(
        "1B",
        "Service crashed / restarting",
        confidence,
        f"{reason} (e.g. “{sample}”).",
        next_step="Scale memory up for now, then look for the leak",
    )


def memory_exceeded(report: Report) -> Match | None:
    """8: the container hit its memory limit."""
    signals = report.signals
    if not signals or signals.oom == 0:
        return None
    limit = report.service.state.memory_limit if report.service else None
    bigger = double_memory(limit) if limit else None
    reason = f"{signals.oom} “memory limit exceeded” messages in {_minutes(WINDOW)} min"
    reason += f" (limit {limit})" if limit else ""
    reason += f", {signals.restarts} restarts."
    target = report.target
    step = (
        f"gcloud run services update {target.name} --region={target.region} --memory={bigger}"
        if bigger
        else "Raise the memory limit"
    )
    return Match("8", "High memory use / OOM kill", 0.85, reason, next_step=step)


def service_down(report: Report) -> Match | None:
    """1: more than 10 % of requests fail, or the health check does."""
    rate, health = _recent_rate(report), report.health
    probe = report.result("health")
    probe_error = probe.error if probe else None
    if probe_error and probe_error.type_name == NotConfigured.__name__:
        probe_error = None  # nothing to probe is not a failing probe
    health_bad = health is not None and health.status >= 500
    if rate is not None and rate > P1_ERROR_RATE:
        reason = f"5xx rate {percent_text(rate)} over the last {_minutes(RECENT)} min"
        reason += " (alert line 10%)"
        if health and health_bad:
            reason += f"; health answered {health.status}"
        return Match("1", "Service down / 5xx errors", 0.7, reason + ".")
    if health_bad or probe_error:
        if health:
            reason = f"The health endpoint answered {health.status}"
        elif probe_error and probe_error.kind == "timeout":
            reason = f"The health endpoint {probe_error}"
        else:
            reason = str(probe_error)
        reason += f"; 5xx rate {percent_text(rate)}." if rate is not None else "."
        return Match("1", "Service down / 5xx errors", 0.5, reason)
    return None


def partial_errors(report: Report) -> Match | None:
    """2: error rate between 5 and 10 % while the service is up."""
    rate, requests = _recent_rate(report), report.requests
    if rate is None or requests is None or not P2_ERROR_RATE <= rate <= P1_ERROR_RATE:
        return None
    reason = (
        f"5xx rate {percent_text(rate)} ({requests.recent.server_errors} of {requests.recent.total} "
        f"requests) over the last {_minutes(RECENT)} min."
    )
    return Match("2", "High error rate, service up", 0.7, reason)


def slow_responses(report: Report) -> Match | None:
    """3: p95 latency above 1000 ms."""
    requests = report.requests
    if not requests or requests.recent.total < MIN_REQUESTS or requests.recent.p95_ms is None:
        return None
    stats = requests.recent
    if stats.p95_ms is None or stats.p95_ms <= SLOW_P95_MS:
        return None
    reason = (
        f"p95 latency {stats.p95_ms:,.0f} ms (p50 {stats.p50_ms or 0:,.0f} ms) over the last "
        f"{_minutes(RECENT)} min, above the {SLOW_P95_MS:,.0f} ms alert line."
    )
    confidence = 0.85 if stats.p95_ms > 2 * SLOW_P95_MS else 0.7
    return Match("3", "Response time spike", confidence, reason)


def _dependency_rule(dependency: str, scenario: str, title: str) -> Rule:
    def rule(report: Report) -> Match | None:
        signals = report.signals
        found = signals.dependency(dependency) if signals else None
        if not found or found.count < DEPENDENCY_MIN:
            return None
        reason = (
            f"{found.count} warnings/errors in {_minutes(WINDOW)} min name {dependency} "
            f"({found.timeouts} timeouts), e.g. “{found.sample}”."
        )
        confidence = 0.85 if found.timeouts >= DEPENDENCY_MIN else 0.7
        return Match(scenario, title, confidence, reason)

    rule.__name__ = rule.__qualname__ = f"{dependency.lower().replace('/', '')}_failures"
    rule.__doc__ = f"{scenario}: errors naming {dependency}."
    return rule


stripe_failures = _dependency_rule("Stripe", "4", "Payment processing failures (Stripe)")
firestore_failures = _dependency_rule("Firestore", "5", "Database (Firestore) unavailable")
pubsub_failures = _dependency_rule("Pub/Sub", "7", "External dependency down (Pub/Sub)")


def input_pattern(report: Report) -> Match | None:
    """6: failures cluster on one request path that is not most of the traffic."""
    errors, signals = report.errors, report.signals
    if not errors or not errors.by_path_all:
        return None
    path, count = errors.by_path_all[0]
    share = count / errors.with_path
    if count < MIN_ERRORS or share < CLUSTER_SHARE:
        return None
    traffic_share = report.requests.path_share(path) if report.requests else None
    if traffic_share is not None and traffic_share > 0.6:
        return None  # the path is most of the traffic: its errors say nothing about input
    dependency_errors = sum(u.count for u in signals.upstream) if signals else 0
    if dependency_errors >= count / 2:
        return None  # a dependency failing on the path it serves, not a bad input
    reason = f"{percent_text(share)} of errors with a path are on {path} ({count} entries)"
    if traffic_share is not None:
        reason += f", which gets {percent_text(traffic_share)} of requests"
    if errors.top_messages:
        reason += f"; top message “{errors.top_messages[0][0]}”"
    return Match("6", "Crash on specific input", 0.7, reason + ".")


def rate_limited(report: Report) -> Match | None:
    """9: a spike of 429 answers."""
    signals = report.signals
    if not signals or signals.rate_limited < RATE_LIMITED_MIN:
        return None
    total = report.requests.window.total if report.requests else 0
    share = signals.rate_limited / total if total else None
    if share is not None and share < RATE_LIMITED_SHARE:
        return None
    reason = f"{signals.rate_limited} requests answered 429 in {_minutes(WINDOW)} min"
    reason += f" ({percent_text(share)} of {total})." if share is not None else "."
    return Match("9", "Rate limiting / traffic spike", 0.8, reason)


RULES: list[Rule] = [
    bad_deployment,
    crash_restarts,
    memory_exceeded,
    service_down,
    partial_errors,
    slow_responses,
    stripe_failures,
    firestore_failures,
    pubsub_failures,
    input_pattern,
    rate_limited,
]

# Matches that are causes (1 and 2 only describe symptoms); 1B and 8 are one cause.
_CAUSES = {"1A": "deploy", "1B": "memory", "8": "memory", "3": "latency", "4": "stripe"}
_CAUSES |= {"5": "firestore", "6": "input", "7": "pubsub", "9": "traffic"}
# A specific match makes the generic one redundant.
_SUPERSEDED_BY = {"1": {"1A", "1B"}}


def cascading(matches: Sequence[Match]) -> Match | None:
    """11: several independent causes at once."""
    causes = sorted({_CAUSES[m.scenario] for m in matches if m.scenario in _CAUSES})
    if len(causes) < CASCADE_CAUSES:
        return None
    ids = ", ".join(m.scenario for m in matches if m.scenario in _CAUSES)
    reason = f"{len(causes)} separate causes at once (scenarios {ids}); find what failed first."
    return Match("11", "Cascading failures", 0.75, reason)


def triage(report: Report, incident_severity: str = "") -> Triage:
    """Every scenario the report points to (most confident first), and a severity hint."""
    matches = [m for m in (rule(report) for rule in RULES) if m is not None]
    found = {m.scenario for m in matches}
    matches = [m for m in matches if not _SUPERSEDED_BY.get(m.scenario, set()) & found]
    cascade = cascading(matches)
    if cascade:
        matches.append(cascade)
    matches.sort(key=lambda m: -m.confidence)  # stable: ties keep rule order
    return Triage(tuple(matches), severity_hint(report, incident_severity))


def severity_hint(report: Report, incident_severity: str) -> SeverityHint | None:
    """Suggest a higher severity when the error rate says the incident is worse than declared."""
    rate = _recent_rate(report)
    current = incident_severity.upper().strip()
    if rate is None or current not in ("P1", "P2", "P3", "P4"):
        return None
    if rate > P1_ERROR_RATE and current != "P1":
        suggested, line = "P1", "above 10%, the runbook's P1 line"
    elif rate >= P2_ERROR_RATE and current in ("P3", "P4"):
        suggested, line = "P2", "5-10%: service degraded, the runbook's P2"
    else:
        return None
    reason = f"5xx rate {percent_text(rate)} over the last {_minutes(RECENT)} min is {line}."
    return SeverityHint(current, suggested, reason)


# -- small pure helpers -----------------------------------------------------------------------


def _recent_rate(report: Report) -> float | None:
    requests = report.requests
    if not requests or requests.recent.total < MIN_REQUESTS:
        return None
    return requests.recent.error_rate


def _recent_rate_text(report: Report) -> str:
    rate = _recent_rate(report)
    return f"; 5xx rate {percent_text(rate)} over the last {_minutes(RECENT)} min" if rate else ""


def _onset(times: Sequence[datetime]) -> datetime:
    """First error of the first minute with a burst; isolated noise does not count."""
    for i, moment in enumerate(times):
        burst = [t for t in times[i:] if t - moment < timedelta(minutes=1)]
        if len(burst) >= ONSET_BURST:
            return moment
    return times[0]


def double_memory(limit: str) -> str | None:
    """`512Mi` -> `1Gi`: the runbook's "scale up temporarily"."""
    match = re.fullmatch(r"(\d+)(Mi|Gi|M|G)", limit.strip())
    if not match:
        return None
    mib = int(match[1]) * (1024 if match[2].startswith("G") else 1) * 2
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def percent_text(rate: float | None) -> str:
    """0.38 -> `38%`, 0.06 -> `6.0%`: one decimal only where it matters."""
    if rate is None:
        return "n/a"
    return f"{rate * 100:.1f}%" if rate < 0.1 else f"{rate * 100:.0f}%"


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def span_text(delta: timedelta) -> str:
    """`480 s` -> `8 min`: durations as people say them."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} d"
