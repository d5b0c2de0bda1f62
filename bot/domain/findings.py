"""What each diagnose source found, as frozen records, and the pure summaries that make them
from the records Google returned. `bot.diagnose` fetches; `bot.domain.triage` names the scenario."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.domain import proposals
from bot.domain.capacity import CapacityFinding
from bot.domain.service import HealthResult, LogRecord, RevisionState, ServiceRef, ServiceState, TrafficShare

WINDOW = timedelta(minutes=15)  # how far back the log sources look


RECENT = timedelta(minutes=5)  # the runbook's alerts speak of "for 5 minutes"


REVISIONS_SHOWN = 5


def answers_triage(revisions: Sequence[RevisionState]) -> bool:
    """Whether the newest revisions read so far hold what the Scenario 1A rule looks back for:
    the newest Ready revision (serving, unless traffic is pinned) and a Ready one before it."""
    return sum(1 for r in revisions if r.ready is True) >= 2


TOP = 5  # rows per grouping


MESSAGE_CHARS = 160


ERROR_SEVERITIES = frozenset({"ERROR", "CRITICAL", "ALERT", "EMERGENCY"})


SOURCE_NAMES = ("service", "revisions", "errors", "requests", "signals", "capacity", "health")


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


Finding = (
    ServiceFinding
    | RevisionsFinding
    | ErrorsFinding
    | RequestsFinding
    | SignalsFinding
    | CapacityFinding
    | HealthResult
)


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
    def capacity(self) -> CapacityFinding | None:
        return self._finding("capacity", CapacityFinding)

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


class NotConfigured(Exception):
    """The source has nothing to query (e.g. no health_url in the config)."""


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"
