"""The diagnose fan-out: sources run in parallel, each bounded by its own timeout.

Overlap is asserted from the start and end times each source records, not from the wall
clock; a failing or silent Logging API must leave the other sources in the report.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.diagnose.fanout import describe_error, diagnose, fan_out
from bot.domain.findings import SOURCE_NAMES, WINDOW, SourceResult
from bot.domain.service import ServiceRef
from bot.domain.triage import triage
from bot.google.cloud import CloudSources, service_log_filter
from bot.google.shared_reads import SharedReads
from bot.sandbox.gcp_presets import GcpSandbox
from bot.slack.blocks.diagnose import detail_texts, summary_blocks

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
    # Faults change between tests: a read shared from the previous test would hide them.
    sources = CloudSources(
        running.cloud_run_url, running.logging_url, log_share_s=0, monitoring_api_url=running.monitoring.url
    )
    sources.warm_up()  # imports and client construction are not what these tests time
    return sources


def by_name(results: tuple[SourceResult, ...]) -> dict[str, SourceResult]:
    return {r.name: r for r in results}


# -- against the emulators --------------------------------------------------------------------


def test_sources_each_delayed_one_second_run_at_the_same_time(cloud, sandbox):
    for source in ("cloud_run", "logging", "monitoring", "health"):
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
    # A timeout long enough that a loaded machine's slow sources still finish well before it:
    # held up by the health check, they would finish at it, not before.
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=3.0)
    results = by_name(report.results)
    assert results["health"].error is not None and results["health"].error.kind == "timeout"
    assert results["health"].finished_s >= 2.9
    slow = {n: results[n].finished_s for n in SOURCE_NAMES[:-1] if not (results[n].ok and results[n].finished_s < 2.0)}
    assert not slow, slow
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


# -- how many Cloud Logging calls one diagnosis costs ----------------------------------------


def test_one_diagnosis_asks_cloud_logging_two_questions_once_each(cloud, sandbox):
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=3)
    assert not report.failed and triage(report, "P2").likely.scenario == "1A"
    assert sandbox.logging.calls == 2
    ref = sandbox.service_ref
    requests_log = f'logName="projects/{ref.project}/logs/run.googleapis.com%2Frequests"'
    assert sorted(r.body["filter"] for r in sandbox.logging.requests) == sorted(
        service_log_filter(ref, NOW - WINDOW, condition) for condition in ("severity>=WARNING", requests_log)
    )
    # Errors are the ERROR-or-worse part of the warnings answer: what asking for them gives.
    errors, _ = cloud.query_logs(ref, NOW - WINDOW, "severity>=ERROR")
    assert report.errors.count == len(errors) > 0
    assert report.errors.times == tuple(sorted(r.timestamp for r in errors))


def busy_entries(sandbox: GcpSandbox, requests: int, warnings: int) -> list[dict]:
    ref = sandbox.service_ref
    resource = {"type": "cloud_run_revision", "labels": {"service_name": ref.name, "location": ref.region}}
    entries = []
    for i in range(requests + warnings):
        at = NOW - timedelta(seconds=1 + i * 600 / (requests + warnings))
        entry = {
            "logName": f"projects/{ref.project}/logs/run.googleapis.com%2Fstdout",
            "resource": resource,
            "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "severity": "WARNING",
            "textPayload": "cache miss",
        }
        if i < requests:
            entry["logName"] = f"projects/{ref.project}/logs/run.googleapis.com%2Frequests"
            entry["severity"] = "INFO"
            entry["httpRequest"] = {"requestMethod": "GET", "requestUrl": "https://x/pricing", "status": 200}
            del entry["textPayload"]
        entries.append(entry)
    return entries


def test_a_busy_service_costs_at_most_seven_calls_and_says_it_sampled(cloud, sandbox):
    sandbox.logging.add(busy_entries(sandbox, requests=6000, warnings=2500))
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=10)
    assert not report.failed
    assert sandbox.logging.calls == 2 + 5  # two pages of warnings, five of request logs
    assert report.requests.sampled and report.errors.sampled and report.signals.sampled
    assert report.requests.window.total == 5000


def test_concurrent_diagnoses_of_one_service_share_their_log_reads(sandbox):
    clock = [0.0]
    shared = CloudSources(sandbox.cloud_run_url, sandbox.logging_url)
    shared.log_reads = SharedReads(15, clock=lambda: clock[0])
    sandbox.delay("logging", 0.3)  # so the later diagnoses arrive while the reads are under way
    moments = [NOW + timedelta(seconds=s) for s in (0, 1, 2, 3)]
    with ThreadPoolExecutor(4) as pool:
        # The earliest diagnosis asks first (a later one's window would not cover an earlier
        # one's oldest minutes); the others arrive while its two reads are under way.
        first = pool.submit(diagnose, shared, sandbox.service_ref, moments[0], timeout_s=5)
        deadline = time.monotonic() + 5
        while len(shared.log_reads._reads) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        rest = [pool.submit(diagnose, shared, sandbox.service_ref, now, timeout_s=5) for now in moments[1:]]
        reports = [first.result(), *(f.result() for f in rest)]
    assert all(not r.failed and triage(r, "P2").likely.scenario == "1A" for r in reports)
    assert sandbox.logging.calls == 2
    clock[0] = 10.0  # a diagnosis 10 s later still takes the shared answer...
    diagnose(shared, sandbox.service_ref, NOW + timedelta(seconds=10), timeout_s=5)
    assert sandbox.logging.calls == 2
    clock[0] = 16.0  # ...one after the 15 s asks again
    diagnose(shared, sandbox.service_ref, NOW + timedelta(seconds=16), timeout_s=5)
    assert sandbox.logging.calls == 4


def test_a_failed_read_is_not_kept_for_the_next_diagnosis(sandbox):
    shared = CloudSources(sandbox.cloud_run_url, sandbox.logging_url)
    sandbox.fail("logging", 503)
    failed = diagnose(shared, sandbox.service_ref, NOW, timeout_s=3)
    assert {r.name for r in failed.failed} == set(LOG_SOURCES)
    sandbox.heal()
    healed = diagnose(shared, sandbox.service_ref, NOW, timeout_s=3)
    assert not healed.failed and sandbox.logging.calls == 4


def test_shared_reads_wait_for_a_read_under_way_and_refetch_what_does_not_fit():
    calls: list[int] = []
    release = threading.Event()
    reads = SharedReads(15, clock=lambda: 0.0)

    def slow(value: int):
        def fetch() -> int:
            calls.append(value)
            release.wait(2)
            return value

        return fetch

    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(reads.get, "k", 0, slow(1), lambda tag: True)
        time.sleep(0.05)
        second = pool.submit(reads.get, "k", 5, slow(2), lambda tag: tag <= 5)
        time.sleep(0.05)
        release.set()
        assert (first.result(), second.result()) == (1, 1) and calls == [1]
    assert reads.get("k", 9, slow(3), lambda tag: tag >= 9) == 3  # the cached tag 0 does not fit
    assert calls == [1, 3]


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
