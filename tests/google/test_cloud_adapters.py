"""The adapters in bot/cloud.py through the real Google clients, against the sandbox emulators.

Each preset is loaded into a Cloud Run Admin API v2, a Cloud Logging API v2 and a health
endpoint on 127.0.0.1; the real `run_v2` and `google.cloud.logging` clients talk REST to them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from google.api_core import exceptions as google_errors

from bot.diagnose.fanout import diagnose
from bot.domain.service import ServiceRef
from bot.domain.triage import triage
from bot.google.cloud import CloudSources, service_log_filter
from bot.sandbox.cloud_logging import FilterError, ListError, parse_filter
from bot.sandbox.gcp_presets import PRESETS, GcpSandbox

NOW = datetime(2026, 1, 25, 14, 40, tzinfo=UTC)
SINCE = NOW - timedelta(minutes=15)
SERVING, PREVIOUS = "tai-autonomics-00042-xyz", "tai-autonomics-00041-kom"


@pytest.fixture
def sandbox(running: GcpSandbox) -> Iterator[GcpSandbox]:
    running.use("healthy", NOW)
    for server in running.servers.values():
        server.requests.clear()
    yield running
    running.heal()
    running.cloud_run.operation_delay_s = 0.0


@pytest.fixture(scope="module")
def cloud(running: GcpSandbox) -> CloudSources:
    # Presets change between tests: a log read shared from the previous one would be stale.
    sources = CloudSources(running.cloud_run_url, running.logging_url, log_share_s=0)
    sources.warm_up()
    return sources


@pytest.fixture
def ref(sandbox: GcpSandbox) -> ServiceRef:
    return sandbox.service_ref


def test_importing_the_diagnostics_loads_no_google_library():
    # The bot must start fast: Google's libraries load on first use, not at import.
    code = (
        "import sys, bot.google.cloud, bot.diagnose.fanout, bot.slack.blocks.diagnose, bot.domain.scenarios;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('google', 'grpc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_production_clients_use_adc_rest_for_cloud_run_and_the_generated_logging_client(monkeypatch):
    # Without API URLs the clients are the production ones. ADC is stubbed so that building
    # them contacts nothing (the real lookup may ask the metadata server).
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

    asked = []

    def adc(*args, **kwargs):
        asked.append(kwargs.get("scopes") or args)
        return AnonymousCredentials(), "demo-project"

    monkeypatch.setattr(google.auth, "default", adc)
    sources = CloudSources()
    sources.warm_up()
    services, revisions = sources._run_client("services"), sources._run_client("revisions")
    assert (services.transport.kind, revisions.transport.kind) == ("rest", "rest")
    assert services.api_endpoint == "run.googleapis.com"
    logging_client = sources._logging_client()
    assert isinstance(logging_client, LoggingServiceV2Client)
    assert logging_client.transport.kind == "grpc" and logging_client.api_endpoint == "logging.googleapis.com"
    assert len(asked) == 3  # every client took Application Default Credentials


# -- Cloud Run --------------------------------------------------------------------------------


def test_get_service_reads_readiness_traffic_and_limits(cloud, ref):
    state = cloud.get_service(ref, timeout_s=2)
    assert state.name == ref.path and state.ready is True
    assert state.url.startswith("https://tai-autonomics-")
    assert [(t.revision, t.percent, t.latest) for t in state.traffic] == [(SERVING, 100, True)]
    assert (state.latest_created_revision, state.latest_ready_revision) == (SERVING, SERVING)
    assert (state.memory_limit, state.max_instances) == ("512Mi", 10)


def test_list_revisions_reads_newest_first_and_stops_once_it_has_enough(cloud, ref, sandbox):
    revisions = cloud.list_revisions(ref, limit=2, timeout_s=2)
    assert [r.name for r in revisions] == [SERVING, PREVIOUS]
    assert revisions[0].ready is True and revisions[0].image.endswith(":1.3.9")
    assert revisions[0].ready_since == NOW - timedelta(hours=26)
    lists = [r for r in sandbox.cloud_run.requests if r.endpoint == "revisions.list"]
    assert [r.query.get("pageSize") for r in lists] == [["50"]]


def test_a_thousand_revisions_are_one_call_when_the_answer_is_on_the_first_page(cloud, ref, sandbox):
    world = sandbox.use("bad_deploy", NOW, revisions=1000)
    assert len(world.revisions) == 1000
    sandbox.cloud_run.requests.clear()
    sandbox.delay("cloud_run", 0.35, endpoint="revisions.list")  # a realistic list call
    started = time.perf_counter()
    report = diagnose(cloud, ref, NOW, timeout_s=3)
    took = time.perf_counter() - started
    lists = [r for r in sandbox.cloud_run.requests if r.endpoint == "revisions.list"]
    assert len(lists) == 1 and lists[0].query.get("pageToken") is None
    assert report.revisions is not None and took < 3
    assert [r.name for r in report.revisions.revisions[:2]] == [world.serving_revision, world.previous_revision]
    verdict = triage(report, "P2")
    assert verdict.likely is not None and verdict.likely.scenario == "1A"
    assert verdict.rollback is not None and verdict.rollback.rollback_revision == world.previous_revision


def test_paging_goes_on_only_until_the_look_back_is_found(cloud, ref, sandbox):
    world = sandbox.use("healthy", NOW, revisions=120)
    sandbox.cloud_run.requests.clear()
    oldest = world.revisions[0]["name"].rsplit("/", 1)[-1]
    revisions = cloud.list_revisions(ref, limit=1, enough=lambda read: any(r.name == oldest for r in read), timeout_s=2)
    lists = [r for r in sandbox.cloud_run.requests if r.endpoint == "revisions.list"]
    assert len(lists) == 3 and revisions[-1].name == oldest and len(revisions) == 120
    sandbox.cloud_run.requests.clear()
    second_page = world.revisions[-60]["name"].rsplit("/", 1)[-1]  # the 60th newest
    revisions = cloud.list_revisions(ref, limit=1, enough=lambda read: any(r.name == second_page for r in read))
    assert len([r for r in sandbox.cloud_run.requests if r.endpoint == "revisions.list"]) == 2
    assert revisions[-1].name == second_page and len(revisions) == 60


def test_revisions_emulator_pages_like_the_api(sandbox, ref):
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import run_v2

    sandbox.use("healthy", NOW, revisions=45)
    client = run_v2.RevisionsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options={"api_endpoint": sandbox.cloud_run_url},
    )
    sandbox.cloud_run.requests.clear()
    listed = list(client.list_revisions(request=run_v2.ListRevisionsRequest(parent=ref.path)))
    names = [r.name for r in listed]
    assert len(names) == len(set(names)) == 45
    created = [r.create_time for r in listed]
    assert created == sorted(created, reverse=True)  # "sorted by creation time, descending"
    # No page size: the server's default of 20; the last page carries no token.
    sizes = [len(p.revisions) for p in client.list_revisions(parent=ref.path).pages]
    assert sizes == [20, 20, 5]
    tokens = [r.query.get("pageToken") for r in sandbox.cloud_run.requests[:3]]
    assert tokens[0] is None and tokens[1] != tokens[2]
    # Too large a page is cut to the maximum, not refused.
    big = client.list_revisions(request=run_v2.ListRevisionsRequest(parent=ref.path, page_size=5000))
    assert len(next(iter(big.pages)).revisions) == 45
    # A token only continues the listing it came from.
    first = next(iter(client.list_revisions(parent=ref.path).pages))
    with pytest.raises(exceptions.BadRequest, match="page token"):
        client.list_revisions(
            request=run_v2.ListRevisionsRequest(parent=ref.path, page_size=7, page_token=first.next_page_token)
        )


def test_set_traffic_moves_everything_to_a_revision_and_waits_for_the_operation(cloud, ref, sandbox):
    sandbox.use("bad_deploy", NOW)
    result = cloud.set_traffic(ref, SERVING, timeout_s=2, wait_s=5)
    assert [(t.revision, t.percent, t.latest) for t in result.service.traffic] == [(SERVING, 100, False)]
    assert result.operation.startswith(f"projects/{ref.project}/locations/{ref.region}/operations/")
    endpoints = [r.endpoint for r in sandbox.cloud_run.requests]
    assert endpoints == ["services.get", "services.patch", "operations.get"]
    assert cloud.get_service(ref, timeout_s=2).traffic == result.service.traffic
    # Moving traffic must not create a revision.
    assert result.service.latest_created_revision == "tai-autonomics-00043-bad"


def test_after_a_rollback_the_diagnosis_no_longer_says_bad_deployment(cloud, ref, sandbox):
    world = sandbox.use("bad_deploy", NOW)
    before = triage(diagnose(cloud, ref, NOW, timeout_s=3), "P1")
    assert before.rollback is not None
    assert before.rollback.rollback_revision == world.previous_revision == SERVING
    cloud.set_traffic(ref, world.previous_revision, timeout_s=2, wait_s=5)
    after = diagnose(cloud, ref, NOW + timedelta(seconds=30), timeout_s=3)
    assert after.serving is not None and after.serving.revision == world.previous_revision
    assert after.serving.age is not None and after.serving.age < timedelta(minutes=1)
    assert "1A" not in {m.scenario for m in triage(after, "P1").matches}


def test_set_traffic_polls_until_a_slow_operation_is_done(cloud, ref, sandbox):
    sandbox.cloud_run.operation_delay_s = 0.5
    result = cloud.set_traffic(ref, PREVIOUS, percent=40, timeout_s=2, wait_s=10)
    shares = sorted((t.revision, t.percent, t.latest) for t in result.service.traffic)
    assert shares == [(PREVIOUS, 40, False), (SERVING, 60, True)]
    polls = [r for r in sandbox.cloud_run.requests if r.endpoint == "operations.get"]
    assert len(polls) >= 2


def test_set_traffic_to_an_unknown_revision_is_refused(cloud, ref):
    with pytest.raises(google_errors.BadRequest, match="not found"):
        cloud.set_traffic(ref, "tai-autonomics-09999-nop", timeout_s=2, wait_s=5)


def test_update_memory_and_max_instances_create_a_revision(cloud, ref):
    memory = cloud.update_memory(ref, "1Gi", timeout_s=2, wait_s=5)
    assert memory.service.memory_limit == "1Gi"
    assert memory.service.latest_ready_revision not in (SERVING, PREVIOUS)
    capped = cloud.update_max_instances(ref, 25, timeout_s=2, wait_s=5)
    assert capped.service.max_instances == 25
    assert capped.service.latest_ready_revision != memory.service.latest_ready_revision
    newest = cloud.list_revisions(ref, limit=1, timeout_s=2)[0]
    assert (newest.name, newest.memory_limit) == (capped.service.latest_ready_revision, "1Gi")


def test_cloud_run_errors_come_back_as_google_exceptions(cloud, ref, sandbox):
    sandbox.fail("cloud_run", 500)
    with pytest.raises(google_errors.InternalServerError):
        cloud.get_service(ref, timeout_s=2)
    missing = ServiceRef(ref.project, ref.region, "nope", "")
    sandbox.heal()
    with pytest.raises(google_errors.NotFound):
        cloud.get_service(missing, timeout_s=2)


# -- Cloud Logging ----------------------------------------------------------------------------


def test_query_logs_sends_an_explicit_time_bound_and_returns_newest_first(cloud, ref, sandbox):
    sandbox.use("bad_deploy", NOW)
    records, sampled = cloud.query_logs(ref, SINCE, "severity>=ERROR", timeout_s=2)
    assert records and not sampled
    assert all(r.severity in ("ERROR", "CRITICAL") and r.timestamp >= SINCE for r in records)
    assert [r.timestamp for r in records] == sorted((r.timestamp for r in records), reverse=True)
    body = sandbox.logging.requests[-1].body
    assert body["filter"] == service_log_filter(ref, SINCE, "severity>=ERROR")
    assert 'timestamp>="2026-01-25T14:25:00Z"' in body["filter"]
    assert (body["orderBy"], body["pageSize"], body["resourceNames"]) == (
        "timestamp desc",
        1000,
        [f"projects/{ref.project}"],
    )


def test_query_logs_parses_request_logs_and_application_payloads(cloud, ref, sandbox):
    sandbox.use("bad_deploy", NOW)
    records, _ = cloud.query_logs(ref, SINCE, "severity>=ERROR", timeout_s=2)
    request = next(r for r in records if r.http)
    assert request.http.status == 500 and request.http.latency_ms is not None
    assert request.path.startswith("/") and request.revision == "tai-autonomics-00043-bad"
    app = next(r for r in records if r.message)
    assert app.message.startswith("badarg in pricing_engine") and app.error_code == "internal_error"


def test_query_logs_pages_and_says_when_it_stopped_early(cloud, ref, sandbox):
    all_records, _ = cloud.query_logs(ref, SINCE, "httpRequest.status>=100", timeout_s=2)
    before = len(sandbox.logging.requests)
    paged, sampled = cloud.query_logs(ref, SINCE, "httpRequest.status>=100", page_size=70, timeout_s=2)
    assert paged == all_records and not sampled
    pages = sandbox.logging.requests[before:]
    assert len(pages) == -(-len(all_records) // 70)
    tokens = [p.body.get("pageToken") for p in pages]
    assert tokens[0] is None and all(tokens[1:]) and len(set(tokens[1:])) == len(pages) - 1
    assert {p.body["pageSize"] for p in pages} == {70}
    first, cut = cloud.query_logs(ref, SINCE, "httpRequest.status>=100", max_entries=25)
    assert cut and first == all_records[:25]
    assert sandbox.logging.requests[-1].body["pageSize"] == 25  # one call, not a page of 1000


def test_logging_emulator_pages_like_the_api(sandbox, ref):
    body = {"resourceNames": [f"projects/{ref.project}"], "filter": service_log_filter(ref, SINCE)}
    first = sandbox.logging.list_entries(body)
    assert len(first["entries"]) == 50 and first["nextPageToken"]  # "Default is 50"
    second = sandbox.logging.list_entries({**body, "pageToken": first["nextPageToken"]})
    assert second["entries"][0] != first["entries"][0]
    with pytest.raises(ListError, match="page token"):
        sandbox.logging.list_entries({**body, "filter": "severity>=ERROR", "pageToken": first["nextPageToken"]})
    for size in (-1, 1001):
        with pytest.raises(ListError, match="pageSize"):
            sandbox.logging.list_entries({**body, "pageSize": size})
    last = sandbox.logging.list_entries({**body, "pageSize": 1000})
    assert "nextPageToken" not in last


def test_reading_logs_contacts_nothing_but_the_configured_endpoint(sandbox, ref, monkeypatch):
    # No Application Default Credentials, no metadata server, no Python-side lookups: the
    # generated client reads entries over its own channel and builds no Logger per log name.
    import google.auth

    def no_adc(*args, **kwargs):
        raise AssertionError("looked for Application Default Credentials")

    looked_up = []
    real = socket.getaddrinfo

    def spy(host, *args, **kwargs):
        looked_up.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(google.auth, "default", no_adc)
    monkeypatch.setattr(socket, "getaddrinfo", spy)
    fresh = CloudSources(sandbox.cloud_run_url, sandbox.logging_url)
    records, _ = fresh.query_logs(ref, SINCE, "severity>=INFO", timeout_s=2)
    assert {r.log_name.rsplit("/", 1)[-1] for r in records} == {"run.googleapis.com%2Frequests"}
    assert sandbox.logging.calls == 1
    assert looked_up == []


def test_an_unsupported_filter_is_refused_by_the_emulator(cloud, ref):
    with pytest.raises(google_errors.InvalidArgument, match="OR"):
        cloud.query_logs(ref, SINCE, "severity>=ERROR OR severity=INFO", timeout_s=2)


def test_every_call_has_its_own_timeout_and_is_not_retried(cloud, ref, sandbox):
    sandbox.hang("logging")
    sandbox.hang("cloud_run")
    for call in (
        lambda: cloud.query_logs(ref, SINCE, "severity>=ERROR", timeout_s=0.3),
        lambda: cloud.get_service(ref, timeout_s=0.3),
        lambda: cloud.list_revisions(ref, timeout_s=0.3),
    ):
        started = time.perf_counter()
        with pytest.raises((google_errors.DeadlineExceeded, requests.exceptions.Timeout)):
            call()
        assert time.perf_counter() - started < 1.0
    assert sandbox.logging.calls == 1
    assert [r.endpoint for r in sandbox.cloud_run.requests] == ["services.get", "revisions.list"]


def test_logging_emulator_filter_language():
    entry = {
        "severity": "WARNING",
        "timestamp": "2026-01-25T14:30:00Z",
        "httpRequest": {"status": 429},
        "resource": {"labels": {"service_name": "svc"}},
        "jsonPayload": {"message": "Rate limit exceeded"},
    }

    def matches(text: str) -> bool:
        return all(c.matches(entry) for c in parse_filter(text))

    assert matches('resource.labels.service_name="svc" AND severity>=WARNING')
    assert not matches("severity>=ERROR")
    assert matches('timestamp>="2026-01-25T14:00:00Z" AND httpRequest.status>=400')
    assert not matches('timestamp>="2026-01-25T14:31:00Z"')
    assert matches('jsonPayload.message:"rate limit" AND NOT httpRequest.status=500')
    assert not matches("jsonPayload.error_code=x")
    for bad in ("a=1 OR b=2", "(a=1)", "severity>=", "a=1 AND"):
        with pytest.raises(FilterError):
            parse_filter(bad)


def test_service_log_filter_names_the_service_and_its_region():
    ref = ServiceRef("p", "europe-west1", "svc", "")
    text = service_log_filter(ref, SINCE, "severity>=ERROR")
    assert text == (
        'resource.type="cloud_run_revision" AND resource.labels.service_name="svc" AND '
        'resource.labels.location="europe-west1" AND timestamp>="2026-01-25T14:25:00Z" '
        "AND severity>=ERROR"
    )


# -- health -----------------------------------------------------------------------------------


def test_health_probe_reports_status_latency_and_a_short_body(cloud, ref, sandbox):
    result = cloud.probe_health(ref.health_url, timeout_s=2)
    assert result.status == 200 and '"status": "healthy"' in result.body
    assert 0 < result.latency_ms < 2000
    sandbox.health.set(503, {"status": "unhealthy", "detail": "x" * 500})
    failing = cloud.probe_health(ref.health_url, timeout_s=2)
    assert failing.status == 503 and len(failing.body) == 200


def test_health_probe_of_a_hanging_endpoint_times_out(cloud, ref, sandbox):
    sandbox.hang("health")
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        cloud.probe_health(ref.health_url, timeout_s=0.3)


def test_trailing_slash_in_the_api_urls_is_harmless(sandbox, ref):
    sources = CloudSources(sandbox.cloud_run_url + "/", sandbox.logging_url + "/")
    assert sources.get_service(ref, timeout_s=2).ready is True
    assert sources.query_logs(ref, SINCE, "severity>=INFO", max_entries=1)[0]


# -- every preset through the real clients ----------------------------------------------------

# Every match triage makes for each preset, most confident first, with its confidence label:
# a match appearing or vanishing is a change a responder would see.
EXPECTED = {
    "healthy": [],
    "bad_deploy": [("1A", "high")],
    "oom": [("8", "high"), ("1B", "high")],
    "slow": [("3", "high")],
    # Timeouts of 5-10 s to three dependencies are also slow responses, a partial error rate
    # and a failing health check.
    "dependency_down": [
        ("3", "high"),
        ("4", "high"),
        ("5", "high"),
        ("7", "high"),
        ("11", "medium"),
        ("2", "medium"),
        ("1", "low"),
    ],
    "rate_limited": [("9", "high")],
    "bad_input": [("6", "medium")],
}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_reads_back_as_its_scenario(cloud, sandbox, preset):
    world = sandbox.use(preset, NOW)
    report = diagnose(cloud, sandbox.service_ref, NOW, timeout_s=3)
    assert not report.failed
    assert report.serving is not None and report.serving.revision == world.serving_revision
    verdict = triage(report, "P2")
    assert [(m.scenario, m.confidence_label) for m in verdict.matches] == EXPECTED[preset]
    rollback = verdict.rollback.rollback_revision if verdict.rollback else None
    assert rollback == (world.previous_revision if preset == "bad_deploy" else None)
