"""`/incident rollback` and `/incident scale` end to end: signed commands and clicks in, the real
`run_v2` client PATCHing the Cloud Run emulator, the health endpoint probed, the proposal
edited in place with the outcome."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from bot.config import default_config_text
from bot.sandbox.cloud_run import OperationPlan
from bot.sandbox.runner import SandboxedBot

# The runbook's config with the waits shortened so failures show within seconds.
CONFIG = (
    default_config_text()
    .replace("operation_timeout: 5m", "operation_timeout: 3s")
    .replace("health_timeout: 60s", "health_timeout: 2s")
)
COMMANDER = "U0ALICE"  # declares, so holds incident_commander
LEAD = "U0LEAD"  # tech_lead: allowed by rollback.allowed
OUTSIDER = "U0SUPPORT"  # has a role, but not one rollback.allowed names


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=CONFIG, preset="bad_deploy") as world:
        yield world
        assert not world.slack.refusals(), f"Slack refused: {world.slack.refusals()}"


def declare(running: SandboxedBot) -> str:
    running.command("declare p1 Checkout down", user=COMMANDER)
    return running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)


def propose(
    running: SandboxedBot, room: str, text: str = "rollback", user: str = LEAD, button: str = "rollback_confirm"
):
    reply = running.command(text, user=user, channel=room)
    assert "Reading" in reply.text, reply.text
    assert "'s its " not in reply.text, reply.text  # "Reading tai-autonomics's its current settings"
    return running.slack.wait_for_message(room, "proposed by", with_button=button)


def refused(text: str) -> bool:
    """A refusal that says who may: here `rollback.allowed` holds tech_lead (U0LEAD)."""
    return "may" in text.lower() and ("<@U0LEAD>" in text or "tech_lead" in text)


def patches(running: SandboxedBot):
    return running.gcp.cloud_run.patches()


def finished(running: SandboxedBot, room: str, ts: str, status: str | None = None):
    """The proposal message once the bot has edited in its outcome."""

    def done():
        proposal = running.bot.store.proposals()[-1]
        if proposal.status in ("pending", "executing") or (status and proposal.status != status):
            return None
        message = next(m for m in running.slack.messages_in(room) if m.ts == ts)
        return message if proposal.outcome.split("\n")[0][:20] in message.all_text else None

    return running.slack.wait_for(done, timeout=15, what=f"the proposal to finish ({status})")


def test_confirmed_rollback_moves_all_traffic_to_the_previous_ready_revision_and_checks_health(running):
    world = running.gcp.world
    room = declare(running)

    proposal = propose(running, room)

    text = proposal.all_text
    assert f"`{world.serving_revision}` 100%" in text  # the traffic split now
    assert f"Roll back to:* `{world.previous_revision}`" in text and "Ready" in text
    assert "<@U0LEAD>" in text and "<@U0PRIMARY>" in text and f"<@{COMMANDER}>" in text  # who may confirm
    proposed_etag = running.gcp.cloud_run.service(running.gcp.service_ref.path)["etag"]
    confirm = proposal.button("rollback_confirm")
    assert confirm["style"] == "danger"
    raw = next(e for b in proposal.blocks if b["type"] == "actions" for e in b["elements"])
    assert raw["confirm"]["confirm"]["text"] == "Roll back"  # a confirm dialog
    assert proposal.has_button("rollback_cancel")
    assert not patches(running)

    running.click(confirm, user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "succeeded")
    [patch] = patches(running)
    assert patch.query["updateMask"] == ["traffic"]
    # The traffic only, conditional on the etag read when it was proposed (issue 20).
    assert set(patch.body) <= {"name", "traffic", "etag"}
    assert patch.body["etag"] == proposed_etag
    [target] = patch.body["traffic"]
    assert target["revision"] == world.previous_revision and target["percent"] == 100
    assert target["type"] in (2, "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION")
    service = running.gcp.cloud_run.service(running.gcp.service_ref.path)
    assert service["trafficStatuses"] == [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "percent": 100, "revision": world.previous_revision}
    ]
    assert running.gcp.health.requests, "the health endpoint was never probed"
    outcome = message.all_text
    assert "Done" in outcome and f"`{world.previous_revision}` 100%" in outcome and "green" in outcome
    assert not message.has_button("rollback_confirm")
    kinds = [e.kind for e in running.bot.store.timeline(1)]
    assert "rollback-proposed" in kinds and "rollback-succeeded" in kinds
    actions = [a.action for a in running.bot.store.audit_log(1)]
    assert "rollback-confirmed" in actions and "rollback-succeeded" in actions


def test_two_concurrent_confirm_clicks_send_one_patch(running):
    running.gcp.cloud_run.operation_plan = OperationPlan(polls=1)  # keep the first one busy a moment
    room = declare(running)
    proposal = propose(running, room)
    button = proposal.button("rollback_confirm")
    clicks = [
        threading.Thread(target=running.click, args=(button,), kwargs={"user": user, "channel": room})
        for user in (LEAD, "U0PRIMARY")
    ]
    for click in clicks:
        click.start()
    for click in clicks:
        click.join()

    finished(running, room, proposal.ts, "succeeded")
    assert len(patches(running)) == 1
    said = [r.text for r in running.slack.responses()]
    assert any("already in progress" in t or "already carried out" in t for t in said), said

    late = running.click(button, user=LEAD, channel=room)
    assert "already carried out" in late.wait_response().text
    assert len(patches(running)) == 1


def test_a_click_by_someone_not_allowed_is_refused_audited_and_sends_nothing(running):
    room = declare(running)
    proposal = propose(running, room)

    click = running.click(proposal.button("rollback_confirm"), user=OUTSIDER, channel=room)

    said = click.wait_response().text
    assert refused(said)
    # Written by bot/permissions.py; matched loosely so a fuller permission layer fits too.
    audited = [a for a in running.bot.store.audit_log(1) if a.actor == OUTSIDER]
    assert any("rollback" in f"{a.action} {json.dumps(a.detail)}" for a in audited), audited
    assert running.bot.store.proposals()[-1].status == "pending"
    assert not patches(running)


def test_proposing_is_refused_to_someone_not_allowed(running):
    room = declare(running)
    reply = running.command("rollback", user=OUTSIDER, channel=room)
    assert refused(reply.text)
    assert not running.bot.store.proposals()


def test_cancel_then_confirm_sends_nothing(running):
    room = declare(running)
    proposal = propose(running, room)

    running.click(proposal.button("rollback_cancel"), user=LEAD, channel=room)
    running.slack.wait_for_message(room, "Cancelled")
    confirm = running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    assert "cancelled" in confirm.wait_response().text
    assert not patches(running)
    assert running.bot.store.proposals()[-1].status == "cancelled"


def test_an_expired_proposal_sends_nothing():
    config = CONFIG.replace("expires_after: 15m", "expires_after: 1s")
    with SandboxedBot(config_text=config, preset="bad_deploy") as running:
        room = declare(running)
        proposal = propose(running, room)
        time.sleep(1.2)
        click = running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

        assert "expired" in click.wait_response().text
        running.slack.wait_for_message(room, "Expired")
        assert not patches(running)
        assert running.bot.store.proposals()[-1].status == "expired"


def test_a_stale_proposal_sends_nothing(running):
    world = running.gcp.world
    room = declare(running)
    proposal = propose(running, room)
    # Someone else moves traffic (by hand, in the console) before the click.
    running.gcp.cloud_run.load(
        {
            **world.service,
            "trafficStatuses": [
                {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "percent": 100, "revision": world.previous_revision}
            ],
        },
        world.revisions,
    )

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "failed")
    assert "Production changed since this was proposed" in message.all_text
    assert not patches(running)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("operation_error", "Failed"),
        ("forbidden", "roles/run.developer"),
        ("never_done", "had not finished it in time"),
        ("failed_precondition", "current state"),
        ("not_found", "does not know the service or revision"),
        ("conflict", "Someone else changed the service"),
    ],
)
def test_failures_are_reported_with_the_next_step(running, fault, expected):
    emulator = running.gcp.cloud_run
    if fault == "operation_error":
        emulator.operation_plan = OperationPlan(error=(9, "Revision is not ready to receive traffic"))
    elif fault == "forbidden":
        emulator.fail_changes(403, "PERMISSION_DENIED", "Permission 'run.services.update' denied")
    elif fault == "never_done":
        emulator.operation_plan = OperationPlan(never=True)
    elif fault == "not_found":
        emulator.fail_changes(404, "NOT_FOUND", "Resource 'tai-autonomics' was not found")
    elif fault == "conflict":
        emulator.fail_changes(409, "ABORTED", "Conflict for resource 'tai-autonomics': version mismatch")
    else:
        emulator.fail_changes(400, "FAILED_PRECONDITION", "Service is being deleted")
    room = declare(running)
    proposal = propose(running, room)

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "failed")
    assert expected in message.all_text
    assert "Next:" in message.all_text
    assert len(patches(running)) == 1  # nothing retried
    assert any(e.kind == "rollback-failed" for e in running.bot.store.timeline(1))


def test_health_that_never_turns_green_is_reported(running):
    running.gcp.health_follows_traffic = False  # the older revision is broken too
    room = declare(running)
    proposal = propose(running, room)

    running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "failed")
    assert "never answered 200" in message.all_text and "503" in message.all_text
    assert len(patches(running)) == 1


def test_a_named_revision_must_exist_and_be_ready(running):
    room = declare(running)
    reply = running.command("rollback tai-autonomics-09999-nop", user=LEAD, channel=room)
    said = reply.wait_response(lambda r: "no revision" in r.text, timeout=10)
    assert "Usage:" in said.text
    assert not running.bot.store.proposals()

    named = running.gcp.world.revisions[0]["name"].rsplit("/", 1)[-1]  # the oldest, 00040
    proposal = propose(running, room, f"rollback {named}")
    assert f"Roll back to:* `{named}`" in proposal.all_text


def test_the_diagnose_summary_button_opens_the_same_proposal(running):
    room = declare(running)
    running.command("diagnose", user=LEAD, channel=room)
    summary = running.slack.wait_for_message(room, "Diagnosis ·", timeout=15)

    running.click(summary.button("rollback_propose"), user=LEAD, channel=room)

    proposal = running.slack.wait_for_message(room, "proposed by", with_button="rollback_confirm")
    assert f"`{running.gcp.world.previous_revision}`" in proposal.all_text


def test_two_person_rule_stops_the_proposer_confirming():
    config = CONFIG.replace("require_second_person: false", "require_second_person: true")
    with SandboxedBot(config_text=config, preset="bad_deploy") as running:
        room = declare(running)
        proposal = propose(running, room)
        assert "not <@U0LEAD>, who proposed it" in proposal.all_text

        own = running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)
        assert "someone else must confirm" in own.wait_response().text
        assert not patches(running)

        running.click(proposal.button("rollback_confirm"), user="U0PRIMARY", channel=room)
        finished(running, room, proposal.ts, "succeeded")
        assert len(patches(running)) == 1


# -- scale -------------------------------------------------------------------------------------


def test_scale_memory_makes_a_new_revision_that_serves():
    with SandboxedBot(config_text=CONFIG, preset="oom") as running:
        _scale_memory(running)


def _scale_memory(running: SandboxedBot) -> None:
    room = declare(running)
    proposal = propose(running, room, "scale memory 1Gi", button="scale_confirm")
    assert "512Mi → *1Gi*" in proposal.all_text

    running.click(proposal.button("scale_confirm"), user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "succeeded")
    [patch] = patches(running)
    assert patch.query["updateMask"] == ["template"]
    assert patch.body["template"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"
    service = running.gcp.cloud_run.service(running.gcp.service_ref.path)
    new = service["latestReadyRevision"].rsplit("/", 1)[-1]
    assert new != running.gcp.world.serving_revision
    assert f"`{new}` is Ready and serving" in message.all_text
    assert "green" in message.all_text


def test_scale_max_instances_when_traffic_is_pinned_moves_traffic_only_if_asked(running):
    world = running.gcp.world
    room = declare(running)
    rollback = propose(running, room)
    running.click(rollback.button("rollback_confirm"), user=LEAD, channel=room)
    finished(running, room, rollback.ts, "succeeded")

    proposal = propose(running, room, "scale max-instances 20", button="scale_confirm")
    assert "no traffic" in proposal.all_text
    assert f"last made `{world.serving_revision}`" in proposal.all_text  # the template's image is the bad one
    move, stay = [b for b in proposal.buttons() if b["action_id"] == "scale_confirm"]
    assert move["value"].endswith(":move") and stay["value"].endswith(":stay")

    running.click(stay, user=LEAD, channel=room)

    message = finished(running, room, proposal.ts, "succeeded")
    patch = patches(running)[-1]
    assert patch.query["updateMask"] == ["template"]
    assert patch.body["template"]["scaling"]["maxInstanceCount"] == 20
    assert "gets *no traffic*" in message.all_text
    service = running.gcp.cloud_run.service(running.gcp.service_ref.path)
    assert service["trafficStatuses"][0]["revision"] == world.previous_revision

    # Moving traffic to a new revision of the bad template brings the bad code back: reported.
    again = propose(running, room, "scale max-instances 30", button="scale_confirm")
    move = [b for b in again.buttons() if b["action_id"] == "scale_confirm"][0]
    running.click(move, user=LEAD, channel=room)
    message = finished(running, room, again.ts, "failed")
    patch = patches(running)[-1]
    assert patch.query["updateMask"] == ["template,traffic"]
    assert "is Ready and serving" in message.all_text
    assert "Changed, but not healthy" in message.all_text and "never answered 200" in message.all_text


def test_a_memory_limit_cloud_run_refuses_is_reported_with_the_next_step():
    with SandboxedBot(config_text=CONFIG, preset="oom") as running:
        room = declare(running)
        proposal = propose(running, room, "scale memory 8Gi", button="scale_confirm")

        running.click(proposal.button("scale_confirm"), user=LEAD, channel=room)

        message = finished(running, room, proposal.ts, "failed")
        assert "cpu must be at least 2" in message.all_text and "--cpu" in message.all_text
        assert len(patches(running)) == 1


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ("memory 64Mi", "between 128Mi and 32Gi"),
        ("memory 64Gi", "between 128Mi and 32Gi"),
        ("memory lots", "Kubernetes units"),
        ("max-instances 0", "between 1 and 1000"),
        ("max-instances 1001", "between 1 and 1000"),
        ("max-instances many", "whole number"),
        ("cpu 4", "use `memory` or `max-instances`"),
        ("memory", "e.g. `memory 1Gi`"),
    ],
)
def test_scale_bounds_are_refused_with_usage(running, args, why):
    room = declare(running)
    reply = running.command(f"scale {args}", user=LEAD, channel=room)
    assert why in reply.text and "Usage: `/incident scale" in reply.text
    assert not running.bot.store.proposals()


def test_the_demo_confirms_the_rollback_and_health_turns_green(tmp_path):
    import io

    from bot.sandbox.demo import run_demo

    out = io.StringIO()
    assert run_demo(db_path=str(tmp_path / "demo.db"), out=out) == 0
    text = out.getvalue()
    assert "presses [Roll back] and confirms the dialog" in text
    assert "Health: 503 → 200" in text and "green after" in text
    assert "*Done* by @lead" in text


@pytest.mark.parametrize("args", ["memory 512Mi", "memory 524288Ki", "max-instances 10"])
def test_scaling_to_the_current_value_proposes_nothing(args):
    with SandboxedBot(config_text=CONFIG, preset="oom") as running:
        room = declare(running)
        reply = running.command(f"scale {args}", user=LEAD, channel=room)
        said = reply.wait_response(lambda r: "already has" in r.text, timeout=10)
        assert "nothing to change" in said.text
        assert not running.bot.store.proposals()


def test_a_permissions_entry_for_rollback_is_what_the_proposal_names_and_what_confirm_enforces():
    config = CONFIG.replace("permissions:\n", "permissions:\n  rollback: [U0SUPPORT]\n", 1)
    assert "rollback: [U0SUPPORT]" in config
    with SandboxedBot(config_text=config, preset="bad_deploy") as world:
        room = declare(world)
        proposal = propose(world, room, user=OUTSIDER)
        who = proposal.all_text.split("Who may confirm:*", 1)[1].split("\n", 1)[0]
        assert "<@U0SUPPORT>" in who and "U0LEAD" not in who and "tech_lead" not in who
        world.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)
        world.slack.wait_for(lambda: world.bot.store.refusals(1), what="the refusal audited")
        assert patches(world) == []


def quiet(running: SandboxedBot) -> None:
    """The declare's set-up has settled: a fault injected now meets the proposal's own calls."""
    running.slack.wait_for(lambda: running.slack.quiet_for() > 1.0, what="Slack quiet for a second")


def proposal_posts(running: SandboxedBot) -> list:
    return [c for c in running.slack.calls_to("chat.postMessage") if "rollback_confirm" in json.dumps(c.params)]


def test_a_proposal_slack_rate_limits_for_a_moment_is_posted_once_after_its_retry_after(running):
    room = declare(running)
    quiet(running)
    # The client sleeps out one short Retry-After itself; the proposal's own tries go past the rest.
    running.slack.rate_limit("chat.postMessage", times=3, retry_after=1)

    proposal = propose(running, room)

    assert [c.status for c in proposal_posts(running)] == [429, 429, 429, 200]
    assert [m.ts for m in running.slack.messages_in(room) if "proposed by" in m.all_text] == [proposal.ts]
    [stored] = running.bot.store.proposals()
    assert stored.status == "pending" and stored.ts == proposal.ts


def test_a_proposal_slack_keeps_refusing_is_withdrawn_and_the_person_told(running):
    room = declare(running)
    quiet(running)
    running.slack.rate_limit("chat.postMessage", times=50, retry_after=1)

    reply = running.command("rollback", user=LEAD, channel=room)
    assert "Reading" in reply.text, reply.text
    told = running.slack.wait_for_ephemeral(LEAD, "Slack did not take the proposal")
    running.slack.clear_faults()

    assert "`ratelimited`" in told.text and "nothing was proposed" in told.text, told.text
    [stored] = running.bot.store.proposals()
    assert stored.status == "cancelled" and stored.ts is None  # no proposal waits unseen
    assert not [m for m in running.slack.messages_in(room) if "proposed by" in m.all_text]
    assert not patches(running)
    # Pressed again once Slack takes posts: one proposal, posted.
    again = propose(running, room)
    assert again.has_button("rollback_confirm") and len(running.bot.store.proposals()) == 2


def test_an_edit_that_lands_after_the_outcome_is_followed_by_the_outcome_again():
    """Slack carries out the "Rolling back…" edit only after the client gave up on it (and its
    retry, and the outcome's edit, went through): the stale edit lands last. The proposal is shown
    again once no such edit can still land, so the message ends on the outcome."""
    with SandboxedBot(config_text=CONFIG, preset="bad_deploy", slack_timeout_s=2) as running:
        room = declare(running)
        proposal = propose(running, room)
        quiet(running)
        running.slack.delay("chat.update", seconds=4, times=1)  # the next edit: the proposal's "Rolling back…"

        running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)
        finished(running, room, proposal.ts, "succeeded")

        def edits():
            return [c for c in running.slack.calls_to("chat.update") if c.params.get("ts") == proposal.ts and c.ok]

        # The stale edit landed after the outcome's (the sandbox records a call as it is answered).
        stale = running.slack.wait_for(
            lambda: [c for c in edits() if c.params["text"].endswith(": executing") and c.at > _outcome(edits()).at]
        )
        assert stale
        shown = running.slack.wait_for(
            lambda: (m := _message(running, room, proposal.ts)) is not None and "*Done*" in m.all_text and m,
            what="the outcome shown again after the stale edit",
        )
        assert "Rolling back" not in shown.all_text
        assert edits()[-1].params["text"].endswith(": succeeded")


def _outcome(edits):
    return next(c for c in edits if c.params["text"].endswith(": succeeded"))


def _message(running: SandboxedBot, room: str, ts: str):
    return next((m for m in running.slack.messages_in(room) if m.ts == ts), None)
