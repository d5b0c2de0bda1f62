"""Google down or slow during an incident: diagnose answers in time with what it has; a rollback
reports the failure and changes nothing."""

from __future__ import annotations

import time

import pytest

from bot.diagnose.fanout import DEFAULT_TIMEOUT_S
from bot.sandbox.runner import SandboxedBot
from tests.e2e.test_rollback import CONFIG, LEAD, declare, finished, patches, propose


@pytest.mark.parametrize("fault", ["hang", "slow", "down"])
def test_diagnose_answers_within_its_timeout_with_what_it_has(fault):
    with SandboxedBot(config_text=CONFIG, preset="bad_deploy") as running:
        room = declare(running)
        gcp = running.gcp
        try:
            if fault == "hang":  # Cloud Logging never answers, Cloud Run is slow, health is fine
                gcp.hang("logging")
                gcp.delay("cloud_run", DEFAULT_TIMEOUT_S + 5)
            elif fault == "slow":  # everything answers, but only after the timeout
                for source in ("cloud_run", "logging", "health"):
                    gcp.delay(source, DEFAULT_TIMEOUT_S + 5)
            else:
                for source in ("cloud_run", "logging", "health"):
                    gcp.fail(source, 503)
            asked = time.time()
            running.command("diagnose", user="U0PRIMARY", channel=room)
            summary = running.slack.wait_for_message(room, "Diagnosis of", timeout=DEFAULT_TIMEOUT_S + 5)
            took = float(summary.ts) - asked
            assert took <= DEFAULT_TIMEOUT_S + 1, f"the summary took {took:.1f} s"
            assert "Not available" in summary.all_text
            if fault == "hang":
                assert "Health" in summary.all_text  # the source that answered is reported
        finally:
            gcp.heal()


def traffic(running: SandboxedBot) -> list[dict]:
    return running.gcp.cloud_run.service(running.gcp.service_ref.path).get("traffic") or []


@pytest.mark.parametrize("fault", ["down", "refused"])
def test_a_rollback_with_cloud_run_failing_reports_it_and_changes_nothing(fault):
    with SandboxedBot(config_text=CONFIG, preset="bad_deploy") as running:
        room = declare(running)
        proposal = propose(running, room)
        before = traffic(running)
        if fault == "down":
            running.gcp.fail("cloud_run", 503)
        else:
            running.gcp.cloud_run.fail_changes(503, "UNAVAILABLE", "The service is currently unavailable")

        running.click(proposal.button("rollback_confirm"), user=LEAD, channel=room)

        message = finished(running, room, proposal.ts, "failed")
        running.gcp.heal()
        assert "Next:" in message.all_text
        if fault == "down":
            assert "Not sent" in message.all_text and "Nothing was changed" in message.all_text
            assert not patches(running), "nothing is sent to a Cloud Run that cannot be read"
        else:
            assert len(patches(running)) == 1, "the refused PATCH is not retried"
        assert traffic(running) == before, "traffic is where it was"
        assert any(e.kind == "rollback-failed" for e in running.bot.store.timeline(1))
