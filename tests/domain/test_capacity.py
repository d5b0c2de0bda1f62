"""Scenario 8 and 9 from Cloud Monitoring's per-minute series: pure rules, an injected `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.capacity import LOGGING, MONITORING, CapacityFinding, Point, memory_pressure, series_text
from bot.domain.findings import SourceResult
from bot.domain.triage import memory_exceeded, rate_limited
from tests.domain.test_triage import report, signals

NOW = datetime(2026, 1, 25, 14, 40, tzinfo=UTC)


def minutes(values: list[float]) -> tuple[Point, ...]:
    """Oldest first, the last one ending at NOW."""
    return tuple(Point(NOW - timedelta(minutes=len(values) - 1 - i), v) for i, v in enumerate(values))


def with_capacity(finding: CapacityFinding, **others: object):
    built = report(**others)
    results = (*built.results, SourceResult("capacity", 0.0, 0.1, finding=finding))
    return type(built)(built.target, built.now, results, built.elapsed_s)


def test_memory_above_90_percent_for_five_minutes_and_growing_is_scenario_8_a_leak():
    finding = CapacityFinding(MONITORING, memory=minutes([0.62] * 5 + [0.75, 0.85, 0.89, 0.91, 0.93, 0.95, 0.97, 0.99]))
    match = memory_exceeded(with_capacity(finding))
    assert match is not None and match.scenario == "8" and match.confidence == 0.9
    assert "above 90% for the last 5 min; growing: a leak?" in match.reason
    assert match.reason.endswith("Source: Cloud Monitoring.")


def test_memory_stable_but_high_is_underprovisioned():
    finding = CapacityFinding(MONITORING, memory=minutes([0.92] * 15))
    match = memory_exceeded(with_capacity(finding))
    assert match is not None and "stable at a high level: underprovisioned" in match.reason


def test_one_minute_at_or_under_the_line_is_not_sustained():
    assert memory_pressure(CapacityFinding(MONITORING, memory=minutes([0.95] * 10 + [0.90] + [0.95] * 3)), NOW) is None
    assert memory_exceeded(with_capacity(CapacityFinding(MONITORING, memory=minutes([0.95, 0.89, 0.95, 0.96])))) is None


def test_points_after_now_do_not_count():
    late = CapacityFinding(MONITORING, memory=tuple(Point(NOW + timedelta(minutes=i), 0.99) for i in range(6)))
    assert memory_pressure(late, NOW) is None


def test_monitoring_down_falls_back_to_the_log_signals_and_says_so():
    fallback = CapacityFinding(LOGGING, note="Cloud Monitoring failed (UNAVAILABLE, 503)")
    match = memory_exceeded(with_capacity(fallback, signals=signals(oom=4, restarts=3)))
    assert match is not None and match.confidence == 0.85
    assert match.reason.endswith("Source: Cloud Logging (Cloud Monitoring failed (UNAVAILABLE, 503)).")
    assert memory_exceeded(with_capacity(fallback, signals=signals())) is None


def test_a_traffic_surge_with_429s_and_scaling_is_scenario_9():
    finding = CapacityFinding(
        MONITORING,
        requests=minutes([20.0] * 7 + [90.0] * 8),
        rate_limited=minutes([0.0] * 7 + [30.0] * 8),
        instances=minutes([2.0] * 7 + [4.0, 6.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
    )
    match = rate_limited(with_capacity(finding))
    assert match is not None and match.scenario == "9" and match.confidence == 0.85
    assert match.reason.startswith("Requests 20/min → 90/min (×4.5), peak 1.5/s; 240 answered 429 (28% of 860)")
    assert "instances 2 → 10" in match.reason and match.reason.endswith("Source: Cloud Monitoring.")


def test_steady_traffic_is_not_scenario_9_even_when_the_logs_were_sampled():
    steady = CapacityFinding(MONITORING, requests=minutes([20.0] * 15), instances=minutes([2.0] * 15))
    assert rate_limited(with_capacity(steady, signals=signals(rate_limited=0))) is None


def test_more_than_1000_requests_a_second_is_scenario_9_without_429s():
    finding = CapacityFinding(MONITORING, requests=minutes([70_000.0] * 15))
    match = rate_limited(with_capacity(finding))
    assert match is not None and match.confidence == 0.7 and "peak 1,166.7/s" in match.reason


def test_series_text_shows_a_few_values_and_the_last():
    assert series_text([0.62, 0.7, 0.8, 0.9, 0.99], percent=True) == "62% → 70% → 90% → 99%"
    assert series_text([]) == "n/a"
