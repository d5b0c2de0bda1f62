"""Triage: rules, one small pure function each, map the findings of a diagnose `Report` to the
runbook's scenarios, with a reason that carries the numbers. No I/O, no clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.capacity import (
    LOGGING,
    MEMORY_HIGH,
    REQUESTS_PER_S_HIGH,
    TRAFFIC_JUMP,
    memory_pressure,
    series_text,
    traffic_spike,
)
from bot.domain.findings import RECENT, WINDOW, NotConfigured, Report

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
    """8: memory above 90 % for 5 minutes (Cloud Monitoring), or the container hit its limit (logs)."""
    signals, capacity = report.signals, report.capacity
    oom = signals.oom if signals else 0
    pressure = memory_pressure(capacity, report.now) if capacity and capacity.from_monitoring else None
    if pressure is None and oom == 0:
        return None
    limit = report.service.state.memory_limit if report.service else None
    bigger = double_memory(limit) if limit else None
    target = report.target
    step = (
        f"gcloud run services update {target.name} --region={target.region} --memory={bigger}"
        if bigger
        else "Raise the memory limit"
    )
    if pressure is not None:
        trend = "growing: a leak?" if pressure.growing else "stable at a high level: underprovisioned"
        reason = (
            f"Memory utilisation (p99 of instances) {series_text(pressure.series, percent=True)} over "
            f"{_minutes(WINDOW)} min, above {MEMORY_HIGH:.0%} for the last 5 min; {trend}"
        )
        reason += f" (limit {limit})" if limit else ""
        reason += f"; {oom} “memory limit exceeded” messages" if oom else ""
        reason += ". Source: Cloud Monitoring."
        if pressure.growing:
            step = f"Raise memory for now ({step}), then find the leak (runbook 8)"
        return Match("8", "High memory use / OOM kill", 0.9, reason, next_step=step)
    assert signals is not None
    reason = f"{signals.oom} “memory limit exceeded” messages in {_minutes(WINDOW)} min"
    reason += f" (limit {limit})" if limit else ""
    reason += f", {signals.restarts} restarts. Source: {_log_source(report)}."
    return Match("8", "High memory use / OOM kill", 0.85, reason, next_step=step)


def _log_source(report: Report) -> str:
    """`Cloud Logging`, and why Cloud Monitoring was not read when it was asked first."""
    capacity = report.capacity
    if capacity is not None and not capacity.from_monitoring and capacity.note:
        return f"{LOGGING} ({capacity.note})"
    if report.result("capacity") is not None and capacity is None:
        return f"{LOGGING} (Cloud Monitoring unavailable)"
    return LOGGING


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
    """9: a traffic spike or a spike of 429 answers (Cloud Monitoring; else the logs' 429s)."""
    capacity = report.capacity
    if capacity is not None and capacity.from_monitoring and capacity.requests:
        return _traffic_from_monitoring(report)
    signals = report.signals
    if not signals or signals.rate_limited < RATE_LIMITED_MIN:
        return None
    total = report.requests.window.total if report.requests else 0
    share = signals.rate_limited / total if total else None
    if share is not None and share < RATE_LIMITED_SHARE:
        return None
    reason = f"{signals.rate_limited} requests answered 429 in {_minutes(WINDOW)} min"
    reason += f" ({percent_text(share)} of {total})" if share is not None else ""
    return Match("9", "Rate limiting / traffic spike", 0.8, reason + f". Source: {_log_source(report)}.")


def _traffic_from_monitoring(report: Report) -> Match | None:
    assert report.capacity is not None
    spike = traffic_spike(report.capacity, report.now)
    share = spike.rate_limited / spike.requests if spike.requests else 0.0
    limited = spike.rate_limited >= RATE_LIMITED_MIN and share >= RATE_LIMITED_SHARE
    surge = spike.peak_per_s > REQUESTS_PER_S_HIGH or (
        spike.jump >= TRAFFIC_JUMP and spike.recent_per_min >= MIN_REQUESTS
    )
    if not (limited or surge):
        return None
    parts = [
        f"Requests {spike.before_per_min:,.0f}/min → {spike.recent_per_min:,.0f}/min"
        + (f" (×{spike.jump:.1f})" if spike.before_per_min else "")
        + f", peak {spike.peak_per_s:,.1f}/s"
    ]
    if spike.rate_limited:
        parts.append(f"{spike.rate_limited} answered 429 ({percent_text(share)} of {spike.requests})")
    if spike.instances_now:
        most = report.service.state.max_instances if report.service else None
        at_max = " (at max instances)" if most and spike.instances_now >= most else ""
        parts.append(f"instances {spike.instances_before} → {spike.instances_now}{at_max}")
    reason = "; ".join(parts) + f" in {_minutes(WINDOW)} min. Source: Cloud Monitoring."
    confidence = 0.85 if limited and surge else 0.8 if limited else 0.7
    step = "Legitimate spike: raise max instances; an attack: block the top sources (runbook 9)"
    return Match("9", "Rate limiting / traffic spike", confidence, reason, next_step=step)


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
