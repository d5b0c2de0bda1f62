"""The diagnose fan-out: sources run in parallel, each bounded by its own timeout.

Overlap is asserted from the start and end times each source records, not from the wall
clock; a failing or silent Logging API must leave the other sources in the report.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.cloud import CloudSources, ServiceRef
from bot.diagnose_blocks import detail_texts, summary_blocks
from bot.diagnostics import (
    SOURCE_NAMES,
    SourceResult,
    describe_error,
    diagnose,
    fan_out,
    triage,
)
from bot.sandbox.gcp_presets import GcpSandbox

NOW = datetime(2026, 1, 25, 14, 40, tzinfo=UTC)
LOG_SOURCES = ("errors", "requests", "signals")
OTHER_SOURCES = ("service", "revisions", "health")


@pytest.fixture
def sandbox(running: GcpSandbox) -> Iterator[GcpSandbox]:
    running.use("bad_deploy", NOW)
    for server in running.servers.values():
        server.requests.clear()
    yield running
    running.heal()


@pytest.fixture(scope="module")
def cloud(running: GcpSandbox) -> CloudSources:
    sources = CloudSources(running.cloud_run_url, running.logging_url)
    sources.warm_up()  # imports and client construction are not what these tests time
    return sources


def by_name(results: tuple[SourceResult, ...]) -> dict[str, SourceResult]:
    return {r.name: r for r in results}


# -- against the emulators --------------------------------------------------------------------


def test_sources_each_delayed_one_second_run_at_the_same_time(cloud, sandbox):
    for source in ("cloud_run", "logging", "health"):
        sandbox.delay(source, 1.0)
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=3)
    results = report.results
    assert [r.name for r in results] == list(SOURCE_NAMES) and not report.failed
    assert all(r.elapsed_s >= 1.0 for r in results)
    # Every source started before any of them finished: they overlapped.
    assert max(r.started_s for r in results) < min(r.finished_s for r in results)
    assert max(r.started_s for r in results) < 0.5


def test_logging_api_failing_leaves_the_other_sources_and_names_the_failed_ones(cloud, sandbox):
    sandbox.fail("logging", 500)
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=2)
    results = by_name(report.results)
    for name in LOG_SOURCES:
        assert results[name].error is not None
        assert results[name].error.kind == "error"
        assert results[name].error.type_name == "InternalServerError"
    assert all(results[name].ok for name in OTHER_SOURCES)
    assert report.serving is not None and report.health is not None
    assert all(results[name].error.summary == "Cloud Logging unavailable (500)" for name in LOG_SOURCES)
    blocks = summary_blocks(report, triage(report, "P2"), incident_number=4)
    assert "*Errors, Requests, Signals*: Cloud Logging unavailable (500)" in str(blocks)
    assert "InternalServerError" not in str(blocks) and sandbox.logging_url not in str(blocks)
    assert any(t.startswith("*Requests*") and "Cloud Logging unavailable (500)" in t for t in detail_texts(report))


@pytest.mark.parametrize(
    ("source", "status", "failed", "words"),
    [
        ("cloud_run", 403, ("service", "revisions"), "Cloud Run API: permission denied"),
        ("cloud_run", 503, ("service", "revisions"), "Cloud Run API unavailable (503)"),
        ("logging", 403, LOG_SOURCES, "Cloud Logging: permission denied"),
        ("logging", 429, LOG_SOURCES, "Cloud Logging: quota exceeded (429)"),
    ],
)
def test_a_failing_api_is_named_in_words_a_responder_knows(cloud, sandbox, source, status, failed, words):
    sandbox.fail(source, status)
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=2)
    assert {r.name for r in report.failed} == set(failed)
    assert {str(r.error) for r in report.failed} == {words}


def test_logging_api_never_answering_costs_only_its_own_timeout(cloud, sandbox):
    sandbox.hang("logging")
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=1.0)
    results = by_name(report.results)
    for name in LOG_SOURCES:
        error = results[name].error
        assert error is not None and error.kind == "timeout"
        assert error.message == "no answer within 1 s"
        assert 0.9 <= results[name].finished_s < 1.5
    assert all(results[name].ok for name in OTHER_SOURCES)
    assert all(results[name].finished_s < 0.5 for name in OTHER_SOURCES)
    assert report.elapsed_s < 1.5
    blocks = str(summary_blocks(report, triage(report, "P2"), incident_number=4))
    assert "*Errors, Requests, Signals*: timed out after 1 s" in blocks


def test_a_hanging_health_endpoint_does_not_hold_up_the_others(cloud, sandbox):
    sandbox.hang("health")
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=0.8)
    results = by_name(report.results)
    assert results["health"].error is not None and results["health"].error.kind == "timeout"
    assert all(results[n].ok and results[n].finished_s < 0.5 for n in SOURCE_NAMES[:-1])
    # Without the health numbers the logs still name the bad deployment.
    assert triage(report, "P2").likely.scenario == "1A"


def test_per_source_timeouts_override_the_default(cloud, sandbox):
    sandbox.delay("health", 0.6)
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=2, timeouts={"health": 0.2})
    health = report.result("health")
    assert health is not None and health.error is not None and health.error.kind == "timeout"
    assert health.finished_s < 0.5


def test_a_missing_health_url_is_reported_not_probed(cloud, sandbox):
    ref = ServiceRef(sandbox.project, sandbox.region, sandbox.name, health_url="")
    report = diagnose(cloud, ref, NOW, timeout_s=2, only=["health", "service"])
    assert [r.name for r in report.results] == ["service", "health"]
    assert report.result("health").error.type_name == "NotConfigured"
    assert not sandbox.health.requests


def test_an_unreachable_health_endpoint_is_an_error_with_its_class(cloud, sandbox):
    ref = ServiceRef(sandbox.project, sandbox.region, sandbox.name, "http://127.0.0.1:9/health")
    report = diagnose(cloud, ref, NOW, timeout_s=2, only=["health"])
    error = report.result("health").error
    assert error is not None and error.type_name == "URLError"
    assert str(error) == "Health endpoint unreachable (connection refused)"
    assert "1" in [m.scenario for m in triage(report, "P2").matches]


# -- the fan-out itself, without a network ----------------------------------------------------


def test_fan_out_keeps_task_order_and_records_results_and_errors():
    def boom() -> None:
        raise ValueError("bad\nthing happened")

    results = fan_out({"a": lambda: 1, "b": boom, "c": lambda: "x"}, dict.fromkeys("abc", 1.0))
    assert [(r.name, r.finding) for r in results] == [("a", 1), ("b", None), ("c", "x")]
    error = results[1].error
    assert (error.kind, error.type_name, error.message) == (
        "error",
        "ValueError",
        "bad thing happened",
    )


def test_fan_out_gives_up_on_a_task_at_its_timeout_but_not_on_the_others():
    release, finished = threading.Event(), threading.Event()

    def stuck_task() -> None:
        release.wait(5)
        finished.set()

    results = fan_out({"stuck": stuck_task, "quick": lambda: "ok"}, {"stuck": 0.3, "quick": 1.0})
    # fan_out returned while the stuck task was still running: nobody waited for it.
    assert not finished.is_set()
    release.set()
    stuck, quick = results
    assert stuck.error is not None and stuck.error.kind == "timeout"
    assert stuck.error.message == "no answer within 0.3 s"
    assert 0.3 <= stuck.finished_s < 0.6 and stuck.started_s is not None
    assert quick.finding == "ok"


def test_fan_out_runs_tasks_concurrently():
    started: dict[str, float] = {}

    def task(name: str):
        def run() -> str:
            started[name] = time.perf_counter()
            time.sleep(0.3)
            return name

        return run

    results = fan_out({n: task(n) for n in "abcdef"}, dict.fromkeys("abcdef", 2.0))
    assert all(r.ok for r in results)
    assert max(r.started_s for r in results) < min(r.finished_s for r in results)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (TimeoutError("timed out"), "timeout"),
        (urllib.error.URLError(TimeoutError("timed out")), "timeout"),
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "error"),
        (ValueError("nope"), "error"),
    ],
)
def test_describe_error_recognises_timeouts_however_wrapped(error, kind):
    assert describe_error(error).kind == kind
    assert describe_error(error).type_name == type(error).__name__
