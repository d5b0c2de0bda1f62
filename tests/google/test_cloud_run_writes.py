"""The write side of bot/cloud.py (`move_traffic`, `change_template`) through the real `run_v2`
REST client, against the Cloud Run emulator: update masks, operations that take several polls or
never finish, and the API errors a change can meet."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from bot.domain.service import ChangeError, ServiceRef
from bot.google.cloud import CloudSources
from bot.sandbox.cloud_run import OperationPlan
from bot.sandbox.gcp_presets import GcpSandbox

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)


@pytest.fixture
def sandbox(running: GcpSandbox) -> Iterator[GcpSandbox]:
    world = running.use("bad_deploy", NOW)
    running.cloud_run.requests.clear()
    yield running
    running.heal()
    running.cloud_run.allow_changes()
    assert world


@pytest.fixture(scope="module")
def cloud(running: GcpSandbox) -> CloudSources:
    return CloudSources(running.cloud_run_url, running.logging_url)


@pytest.fixture
def ref(sandbox: GcpSandbox) -> ServiceRef:
    return sandbox.service_ref


def test_move_traffic_sends_only_the_traffic_field(cloud, ref, sandbox):
    previous = sandbox.world.previous_revision

    result = cloud.move_traffic(ref, previous, timeout_s=2, wait_s=5)

    [patch] = sandbox.cloud_run.patches()
    assert patch.query["updateMask"] == ["traffic"]
    assert "template" not in patch.body
    assert [(t.revision, t.percent) for t in result.service.traffic] == [(previous, 100)]
    stored = sandbox.cloud_run.service(ref.path)
    assert stored["template"] == sandbox.world.service["template"]  # untouched


def test_an_operation_done_only_after_polls_is_waited_for(cloud, ref, sandbox):
    sandbox.cloud_run.operation_plan = OperationPlan(polls=2)

    result = cloud.move_traffic(ref, sandbox.world.previous_revision, timeout_s=2, wait_s=10)

    polls = [r for r in sandbox.cloud_run.requests if r.endpoint == "operations.get"]
    assert len(polls) >= 3 and result.service.traffic[0].percent == 100


def test_an_operation_that_never_finishes_is_a_timeout_after_the_request_was_sent(cloud, ref, sandbox):
    sandbox.cloud_run.operation_plan = OperationPlan(never=True)
    with pytest.raises(ChangeError) as caught:
        cloud.move_traffic(ref, sandbox.world.previous_revision, timeout_s=2, wait_s=1.5)
    assert caught.value.reason == "timeout" and caught.value.sent
    # Meanwhile the service says it is still reconciling.
    with urllib.request.urlopen(f"{sandbox.cloud_run_url}/v2/{ref.path}") as response:
        assert json.loads(response.read())["reconciling"] is True


def test_an_operation_error_leaves_the_service_as_it_was(cloud, ref, sandbox):
    sandbox.cloud_run.operation_plan = OperationPlan(error=(9, "Revision is not ready"))
    with pytest.raises(ChangeError) as caught:
        cloud.move_traffic(ref, sandbox.world.previous_revision, timeout_s=2, wait_s=5)
    assert caught.value.reason == "failed_precondition" and "not ready" in caught.value.message
    status = sandbox.cloud_run.service(ref.path)["trafficStatuses"]
    assert status == sandbox.world.service["trafficStatuses"]


@pytest.mark.parametrize(
    ("status", "grpc", "reason"),
    [
        (403, "PERMISSION_DENIED", "permission_denied"),
        (404, "NOT_FOUND", "not_found"),
        (400, "FAILED_PRECONDITION", "failed_precondition"),
        (409, "ABORTED", "conflict"),
        (503, "UNAVAILABLE", "unavailable"),
    ],
)
def test_api_errors_are_classified_and_nothing_changes(cloud, ref, sandbox, status, grpc, reason):
    sandbox.cloud_run.fail_changes(status, grpc, "no")
    with pytest.raises(ChangeError) as caught:
        cloud.move_traffic(ref, sandbox.world.previous_revision, timeout_s=2, wait_s=5)
    assert caught.value.reason == reason and not caught.value.sent
    assert len(sandbox.cloud_run.patches()) == 1  # never retried, not even a 503
    assert sandbox.cloud_run.service(ref.path)["trafficStatuses"] == sandbox.world.service["trafficStatuses"]


def test_a_template_change_makes_a_new_revision_and_can_move_traffic_to_it(cloud, ref, sandbox):
    cloud.move_traffic(ref, sandbox.world.previous_revision, timeout_s=2, wait_s=5)  # pinned now

    pinned = cloud.change_template(ref, memory="1Gi", timeout_s=2, wait_s=5)
    assert pinned.service.memory_limit == "1Gi"
    assert pinned.service.latest_created_revision != sandbox.world.serving_revision
    assert pinned.service.traffic[0].revision == sandbox.world.previous_revision

    moved = cloud.change_template(ref, max_instances=40, traffic_to_latest=True, timeout_s=2, wait_s=5)
    assert moved.service.max_instances == 40
    assert moved.service.traffic[0].latest and moved.service.traffic[0].revision == moved.service.latest_ready_revision
    assert sandbox.cloud_run.patches()[-1].query["updateMask"] == ["template,traffic"]


def test_a_nested_mask_path_changes_only_that_field_and_validate_only_changes_nothing(ref, sandbox):
    base = f"{sandbox.cloud_run_url}/v2/{ref.path}"

    def patch(query: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{base}?{query}",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    checked = patch(
        "updateMask=template.scaling.maxInstanceCount&validateOnly=true",
        {"template": {"scaling": {"maxInstanceCount": 7}}},
    )
    assert checked["done"] is True and checked["response"]["template"]["scaling"]["maxInstanceCount"] == 7
    assert sandbox.cloud_run.service(ref.path)["template"]["scaling"]["maxInstanceCount"] == 10

    patch("updateMask=template.scaling.maxInstanceCount", {"template": {"scaling": {"maxInstanceCount": 7}}})
    template = sandbox.cloud_run.service(ref.path)["template"]
    assert template["scaling"] == {"minInstanceCount": 1, "maxInstanceCount": 7}
    assert template["containers"] == sandbox.world.service["template"]["containers"]


def test_the_etag_changes_on_every_change_and_a_stale_one_is_refused_with_409_aborted(ref, sandbox):
    base = f"{sandbox.cloud_run_url}/v2/{ref.path}"
    first = sandbox.cloud_run.service(ref.path)["etag"]
    assert first.startswith('"') and first.endswith('"')  # quoted, as RFC 7232 and AIP-154 ask

    def patch(body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{base}?updateMask=template.scaling.maxInstanceCount",
            data=json.dumps(body).encode(),
            method="PATCH",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, _ = patch({"template": {"scaling": {"maxInstanceCount": 7}}, "etag": first})
    second = sandbox.cloud_run.service(ref.path)["etag"]
    assert status == 200 and second != first

    status, body = patch({"template": {"scaling": {"maxInstanceCount": 9}}, "etag": first})  # stale
    assert status == 409 and body["error"]["status"] == "ABORTED"
    assert sandbox.cloud_run.service(ref.path)["template"]["scaling"]["maxInstanceCount"] == 7
    assert sandbox.cloud_run.service(ref.path)["etag"] == second

    sandbox.cloud_run.change(ref.path, image="example/other:1")  # someone else's deploy
    assert sandbox.cloud_run.service(ref.path)["etag"] != second


def test_a_write_proposed_on_an_old_etag_is_stale_and_sends_nothing(cloud, ref, sandbox):
    proposed = cloud.get_service(ref, timeout_s=2).etag
    sandbox.cloud_run.change(ref.path, image="example/other:1")

    with pytest.raises(ChangeError) as caught:
        cloud.move_traffic(ref, sandbox.world.previous_revision, etag=proposed, timeout_s=2, wait_s=5)
    assert caught.value.reason == "stale" and not caught.value.sent
    assert not sandbox.cloud_run.patches()

    with pytest.raises(ChangeError) as caught:
        cloud.change_template(ref, memory="1Gi", etag=proposed, timeout_s=2, wait_s=5)
    assert caught.value.reason == "stale" and not sandbox.cloud_run.patches()


def _get(sandbox: GcpSandbox, path: str) -> dict:
    with urllib.request.urlopen(f"{sandbox.cloud_run_url}/v2/{path}") as response:
        return json.loads(response.read())


def test_while_a_change_reconciles_the_service_shows_transient_values_then_the_outcome(cloud, ref, sandbox):
    before = _get(sandbox, ref.path)
    sandbox.cloud_run.operation_plan = OperationPlan(polls=3)

    # Send the change with the real client, but look at the service before its operation is done.
    from google.cloud import run_v2
    from google.protobuf import field_mask_pb2

    client = cloud._run_client("services")
    service = client.get_service(name=ref.path)
    service.template.containers[0].resources.limits["memory"] = "1Gi"
    request = run_v2.UpdateServiceRequest(
        service=run_v2.Service(name=ref.path, template=service.template, etag=service.etag),
        update_mask=field_mask_pb2.FieldMask(paths=["template"]),
    )
    operation = client.update_service(request=request)

    during = _get(sandbox, ref.path)
    assert during["reconciling"] is True and during["terminalCondition"]["state"] == "CONDITION_RECONCILING"
    assert int(during["generation"]) == int(before["generation"]) + 1
    assert during["observedGeneration"] == before["observedGeneration"]
    assert during["latestReadyRevision"] == before["latestReadyRevision"]
    assert during["latestCreatedRevision"] != before["latestCreatedRevision"]
    assert during["trafficStatuses"] == before["trafficStatuses"]
    new = during["latestCreatedRevision"]
    revision = _get(sandbox, new)
    assert revision["reconciling"] is True
    assert next(c for c in revision["conditions"] if c["type"] == "Ready")["state"] == "CONDITION_RECONCILING"

    operation.result(timeout=10)

    after = _get(sandbox, ref.path)
    assert after["reconciling"] is False and after["terminalCondition"]["state"] == "CONDITION_SUCCEEDED"
    assert after["observedGeneration"] == after["generation"]
    assert after["latestReadyRevision"] == after["latestCreatedRevision"] == new
    assert next(c for c in _get(sandbox, new)["conditions"] if c["type"] == "Ready")["state"] == "CONDITION_SUCCEEDED"


def test_a_failed_change_keeps_the_last_serving_values_and_its_revision_is_not_ready(cloud, ref, sandbox):
    before = _get(sandbox, ref.path)
    message = "Revision failed: the user-provided container failed to start and listen on PORT=8080"
    sandbox.cloud_run.operation_plan = OperationPlan(error=(9, message))

    with pytest.raises(ChangeError) as caught:
        cloud.change_template(ref, memory="1Gi", traffic_to_latest=True, timeout_s=2, wait_s=5)
    assert caught.value.sent

    after = _get(sandbox, ref.path)
    assert after["reconciling"] is False
    assert (
        after["terminalCondition"]["state"] == "CONDITION_FAILED" and message in after["terminalCondition"]["message"]
    )
    assert after["observedGeneration"] == before["observedGeneration"] != after["generation"]
    assert after["latestReadyRevision"] == before["latestReadyRevision"]
    assert after["trafficStatuses"] == before["trafficStatuses"]
    new = after["latestCreatedRevision"]
    assert new != before["latestCreatedRevision"]
    ready = next(c for c in _get(sandbox, new)["conditions"] if c["type"] == "Ready")
    assert ready["state"] == "CONDITION_FAILED" and ready["message"] == message
