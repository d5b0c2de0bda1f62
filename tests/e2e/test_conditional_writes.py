"""Changes that cannot clobber production (issue 20): every write carries the etag read when the
change was proposed, so a deploy landing in between is never reverted, and a rollback moves
percentages only, keeping every tagged target. End to end: signed commands and clicks in, the
real `run_v2` client against the Cloud Run emulator, which refuses a stale etag as Cloud Run does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.cloud_run import LATEST, REVISION
from bot.sandbox.runner import SandboxedBot
from tests.e2e.test_rollback import CONFIG, LEAD, declare, finished, patches, propose

NEW_IMAGE = "us-docker.pkg.dev/demo-project/tai/tai-autonomics:1.4.1"


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=CONFIG, preset="bad_deploy") as world:
        yield world
        assert not world.slack.refusals(), f"Slack refused: {world.slack.refusals()}"


def _image(service: dict) -> str:
    return service["template"]["containers"][0]["image"]


def test_a_deploy_between_proposal_and_confirm_is_not_reverted(running):
    path = running.gcp.service_ref.path
    room = declare(running)
    proposal = propose(running, room)
    deployed = running.gcp.cloud_run.change(path, image=NEW_IMAGE)  # CI deploys meanwhile
    new = deployed["latestCreatedRevision"].rsplit("/", 1)[-1]

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "failed")
    assert "tai-autonomics changed since this proposal: a new revision went live at" in message.all_text
    assert f"`{new}`" in message.all_text and "Nothing was changed; propose again" in message.all_text
    assert not patches(running)  # the etag no longer matched: nothing was sent
    # The channel is told in a message of its own, not only in the edited proposal.
    running.slack.wait_for(
        lambda: [m for m in running.slack.messages_in(room) if m.ts != proposal.ts and "changed since" in m.text],
        what="the channel told",
    )
    service = running.gcp.cloud_run.service(path)
    assert _image(service) == NEW_IMAGE and service["trafficStatuses"][0]["type"] == LATEST


def test_a_deploy_racing_the_write_is_refused_by_cloud_run_and_never_retried(running):
    path = running.gcp.service_ref.path
    room = declare(running)
    proposal = propose(running, room)
    # The deploy lands after the bot's last read and before its PATCH: only the etag stops it.
    running.gcp.cloud_run.before_next_patch = lambda: running.gcp.cloud_run.change(path, image=NEW_IMAGE)

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "failed")
    assert "changed since this proposal: a new revision went live" in message.all_text
    [patch] = patches(running)  # sent once, refused, not retried
    assert patch.body["etag"] == proposal_etag(running)
    service = running.gcp.cloud_run.service(path)
    assert _image(service) == NEW_IMAGE
    assert service["trafficStatuses"] == [{"type": LATEST, "percent": 100}]
    assert any(e.kind == "rollback-failed" for e in running.bot.store.timeline(1))


def proposal_etag(running: SandboxedBot) -> str:
    return running.bot.store.proposals()[-1].etag


def test_a_scale_whose_template_changed_meanwhile_keeps_the_deployed_template():
    with SandboxedBot(config_text=CONFIG, preset="oom") as running:
        path = running.gcp.service_ref.path
        room = declare(running)
        proposal = propose(running, room, "scale memory 1Gi", button="scale_confirm")
        running.gcp.cloud_run.before_next_patch = lambda: running.gcp.cloud_run.change(path, image=NEW_IMAGE)

        running.click(proposal.button("scale_confirm"), user=LEAD, channel=room)

        message = finished(running, room, proposal.ts, "failed")
        assert "changed since this proposal" in message.all_text
        [patch] = patches(running)
        assert patch.body["etag"] and patch.body["etag"] == proposal_etag(running)
        template = running.gcp.cloud_run.service(path)["template"]
        assert template["containers"][0]["image"] == NEW_IMAGE  # not written back over
        assert template["containers"][0]["resources"]["limits"]["memory"] == "512Mi"


def test_a_tagged_zero_percent_target_survives_a_rollback(running):
    world = running.gcp.world
    path = running.gcp.service_ref.path
    oldest = world.revisions[0]["name"].rsplit("/", 1)[-1]
    running.gcp.cloud_run.change(
        path,
        traffic=[
            {"type": LATEST, "percent": 90},
            {"type": REVISION, "revision": world.previous_revision, "percent": 10, "tag": "canary"},
            {"type": REVISION, "revision": oldest, "percent": 0, "tag": "legacy"},
        ],
    )
    room = declare(running)
    proposal = propose(running, room)
    text = proposal.all_text
    assert "Tagged targets stay, with their tags and URLs" in text
    assert f"`canary` → `{world.previous_revision}` (10% → 0%)" in text and f"`legacy` → `{oldest}` (0%)" in text

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    finished(running, room, proposal.ts, "succeeded")
    statuses = running.gcp.cloud_run.service(path)["trafficStatuses"]
    assert {"type": REVISION, "percent": 0, "revision": oldest, "tag": "legacy"} in statuses
    assert {"type": REVISION, "percent": 0, "revision": world.previous_revision, "tag": "canary"} in statuses
    assert {"type": REVISION, "percent": 100, "revision": world.previous_revision} in statuses
    assert len(statuses) == 3


def test_a_proposal_cannot_be_confirmed_once_its_incident_is_resolved(running):
    room = declare(running)
    proposal = propose(running, room)
    running.command("resolve Fixed by hand", user="U0ALICE", channel=room)
    running.slack.wait_for(lambda: not running.bot.store.get(1).is_open, what="the incident resolved")

    click = running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    said = click.wait_response().text
    assert "INC-1 is resolved" in said and "Nothing was sent" in said
    assert not patches(running)
    assert running.bot.store.proposals()[-1].status == "pending"


def test_a_scale_whose_new_revision_never_becomes_ready_is_reported_and_traffic_stays():
    from bot.sandbox.cloud_run import OperationPlan

    with SandboxedBot(config_text=CONFIG, preset="oom") as running:
        path = running.gcp.service_ref.path
        before = running.gcp.cloud_run.service(path)
        why = "The user-provided container failed to start and listen on the port defined by PORT=8080"
        running.gcp.cloud_run.operation_plan = OperationPlan(polls=1, error=(9, why))
        room = declare(running)
        proposal = propose(running, room, "scale memory 1Gi", button="scale_confirm")

        running.click(proposal.button("scale_confirm"), user=LEAD, channel=room)

        text = finished(running, room, proposal.ts, "failed").all_text
        service = running.gcp.cloud_run.service(path)
        new = service["latestCreatedRevision"].rsplit("/", 1)[-1]
        assert f"New revision `{new}` did not become Ready: {why}" in text
        assert "Traffic did not move" in text and f"`{running.gcp.world.serving_revision}`" in text
        assert f"gcloud run revisions describe {new}" in text
        assert service["trafficStatuses"] == before["trafficStatuses"]
        assert service["latestReadyRevision"] == before["latestReadyRevision"]
        assert len(patches(running)) == 1  # never retried
