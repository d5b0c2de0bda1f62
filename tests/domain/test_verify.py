"""The VERIFY step's pure rules: thresholds, the series shown, the verdict, when samples are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.policy import SmokeCall, VerifyRules
from bot.domain.verify import (
    Sample,
    SmokeResult,
    Watch,
    WatchStatus,
    breaches,
    judge,
    offset_text,
    percent,
    samples_from_text,
    samples_to_text,
    series_lines,
    sources_used,
)

T0 = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
RULES = VerifyRules(smoke=(SmokeCall("https://api.example.com/v1/pricing", 200),))
WINDOW = timedelta(minutes=5)


def sample(offset: float, errors: int = 0, requests: int = 1000, p95: float = 180.0, health: int = 200, smoke=200):
    return Sample(
        offset,
        health=health,
        requests=requests,
        errors=errors,
        p95_ms=p95,
        source="Cloud Monitoring",
        smoke=(SmokeResult("https://api.example.com/v1/pricing", 200, smoke),),
    )


def test_the_runbooks_thresholds():
    assert breaches(sample(30, errors=9), RULES) == []  # 0.9%
    assert breaches(sample(30, errors=10), RULES) == ["5xx 1%"]  # "under 1%"
    assert breaches(sample(30, p95=500), RULES) == ["p95 500 ms"]
    assert breaches(sample(30, health=503), RULES) == ["health 503"]
    assert breaches(sample(30, smoke=500), RULES) == ["https://api.example.com/v1/pricing 500 (expected 200)"]
    assert breaches(sample(30, requests=0, errors=0), RULES) == []  # no traffic is no 5xx rate
    assert breaches(sample(30, health=503), RULES, health_checked=False) == []


def test_held_for_the_window_or_regressed_at_the_first_sample_over():
    good = [sample(30 * i) for i in range(1, 11)]
    assert judge(good[:5], RULES, WINDOW, health_checked=True).status == WatchStatus.WATCHING
    assert judge(good, RULES, WINDOW, health_checked=True).status == WatchStatus.HELD
    bad = [*good[:3], sample(120, errors=120), sample(150, errors=500)]
    verdict = judge(bad, RULES, WINDOW, health_checked=True)
    assert verdict.status == WatchStatus.REGRESSED and verdict.breaches == ("5xx 12%",)
    assert offset_text(verdict.at_offset_s) == "+2m"


def test_a_short_series_per_signal_and_the_source_named():
    samples = [sample(0, errors=380), sample(30, errors=40), sample(60, errors=6, p95=120, health=200)]
    lines = series_lines(samples)
    assert lines[0] == "5xx 38% → 4% → 0.6%"
    assert lines[1] == "p95 180 → 120 ms" and lines[2] == "health 200"
    assert lines[3] == "https://api.example.com/v1/pricing 200"
    assert percent(0.006) == "0.6%" and percent(0) == "0%"
    fallback = Sample(30, source="Cloud Logging", source_note="Cloud Monitoring timed out")
    assert sources_used([fallback]) == "Cloud Logging (Cloud Monitoring timed out)"
    assert samples_from_text(samples_to_text(samples)) == tuple(samples)


def test_samples_come_every_interval_and_the_last_at_the_window_end_and_a_restart_skips_missed_slots():
    watch = Watch(1, 7, "U0LEAD", T0, window_s=300, every_s=30)
    assert watch.next_at == T0
    watch = Watch(1, 7, "U0LEAD", T0, window_s=300, every_s=30, samples=(sample(0.2), sample(30.1)))
    assert watch.next_at == T0 + timedelta(seconds=60) and not watch.over
    after_downtime = Watch(1, 7, "U0LEAD", T0, 300, 30, samples=(sample(0), sample(30), sample(171)))
    assert after_downtime.next_at == T0 + timedelta(seconds=180)  # one sample, not four
    last = Watch(1, 7, "U0LEAD", T0, 70, 30, samples=(sample(0), sample(30), sample(60)))
    assert last.next_at == T0 + timedelta(seconds=70)
    assert Watch(1, 7, "U0LEAD", T0, 70, 30, samples=(sample(70.01),)).over
