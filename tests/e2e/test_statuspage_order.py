"""Status page calls end to end: one at a time per incident, in order, the resolve last.

The bot talks to the local Statuspage emulator; P2 is public from its declare (the default
`statuspage.severities`), P3 only once someone posts `update --public`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.sandbox.runner import SandboxedBot
from bot.sandbox.statuspage import StatuspageSandbox
from tests.e2e.test_reminders import REMINDER_CONFIG, declare_acked

KEY = "sp-order-key"
ORDER_CONFIG = REMINDER_CONFIG.replace("update_every: 2s", "update_every: 60s")  # no reminders in the way


@pytest.fixture
def world(monkeypatch) -> Iterator[tuple[SandboxedBot, StatuspageSandbox]]:
    with StatuspageSandbox(page_id="pg1", api_key=KEY) as page:
        monkeypatch.setenv("TEST_STATUSPAGE_KEY", KEY)
        config = (
            ORDER_CONFIG
            + f"statuspage: {{page_id: pg1, api_key_env: TEST_STATUSPAGE_KEY, api_url: '{page.api_url}'}}\n"
        )
        with SandboxedBot(config_text=config) as running:
            running.bot.deliveries.retry_base = timedelta(milliseconds=300)
            yield running, page
            assert not running.slack.refusals()


def public_incident(running: SandboxedBot, page: StatuspageSandbox) -> str:
    running.slack.wait_for(lambda: running.bot.store.get(1).statuspage_id)
    return running.bot.store.get(1).statuspage_id


def settled(running: SandboxedBot) -> bool:
    """No status page call left to make or being made."""
    return not [d for d in running.bot.store.deliveries(1, kind="statuspage") if d.status in ("pending", "sending")]


def test_an_update_that_failed_never_lands_after_the_resolve(world):
    running, page = world
    declare_acked(running)
    public_id = public_incident(running, page)
    page.fail(times=1, status=503, endpoint="update_incident")

    running.command("update INC-1 --public identified Bad index on search", user="U0ALICE")
    running.slack.wait_for(lambda: page.calls_to("update_incident"))  # the 503
    running.command("resolve INC-1 Index rebuilt", user="U0ALICE")

    running.slack.wait_for(lambda: settled(running))
    time.sleep(1.0)  # past the failed update's retry (300 ms, then 600 ms)
    assert page.incident(public_id)["status"] == "resolved"
    assert [c.body["incident"]["status"] for c in page.calls_to("update_incident")] == ["identified", "resolved"]
    [dropped] = [d for d in running.bot.store.deliveries(1, kind="statuspage") if d.status == "cancelled"]
    assert "superseded" in (dropped.last_error or "")


def test_calls_of_one_incident_go_one_at_a_time_in_order_and_superseded_updates_collapse(world):
    running, page = world
    declare_acked(running)
    public_incident(running, page)
    page.delay(0.4)  # every call is slow: a client that does not wait its turn overlaps them

    for status, text in [("investigating", "Looking"), ("identified", "Bad index"), ("monitoring", "Rebuilt")]:
        running.command(f"update INC-1 --public {status} {text}", user="U0ALICE")
    running.command("resolve INC-1 All good", user="U0ALICE")

    running.slack.wait_for(lambda: settled(running), timeout=15)
    assert page.most_at_once == 1
    statuses = [c.body["incident"]["status"] for c in page.calls_to("update_incident")]
    assert statuses[-1] == "resolved" and statuses.count("resolved") == 1
    order = ["investigating", "identified", "monitoring", "resolved"]
    assert statuses == sorted(statuses, key=order.index), "an older update went out after a newer one"
    # The first update went at once; the two queued behind it were superseded by the resolve.
    assert len(statuses) < 4


def test_retry_after_is_honoured(world):
    running, page = world
    declare_acked(running)
    public_incident(running, page)
    page.rate_limit(times=1, retry_after=2, endpoint="update_incident")

    running.command("update INC-1 --public identified Bad index", user="U0ALICE")

    calls = running.slack.wait_for(
        lambda: page.calls_to("update_incident")[1:] and page.calls_to("update_incident"), timeout=8
    )
    assert calls[1].at - calls[0].at >= 1.9  # not the 300 ms backoff: the server asked for 2 s
    assert calls[1].body["incident"]["status"] == "identified"


def test_a_call_the_status_page_refuses_is_not_retried_and_the_war_room_hears_why(world):
    running, page = world
    room = declare_acked(running)
    public_incident(running, page)
    page.fail(times=5, status=422, endpoint="update_incident")

    running.command("update INC-1 --public identified Bad index", user="U0ALICE")

    warning = running.slack.wait_for_message(room, "The status page refused the update")
    assert "422" in warning.all_text and KEY not in warning.all_text
    time.sleep(1.5)  # past several retries at 300 ms, had it been retried
    assert len(page.calls_to("update_incident")) == 1
    assert "failed" not in " ".join(m.all_text for m in running.slack.messages_in(room) if "status page" in m.all_text)


def test_a_p3_made_public_by_an_update_posts_no_spurious_failure(world):
    running, page = world
    running.command("declare p3 Export button broken", user="U0ALICE")
    announcement = running.slack.wait_for_message("C0INCIDENT", "INC-1 ·")
    running.slack.wait_for_dm("U0SUPPORT", "You are paged")
    page.delay(0.5, endpoint="create_incident")  # the update is made while the create is under way

    running.command("update INC-1 --public monitoring Fix deployed", user="U0ALICE")

    running.slack.wait_for(lambda: settled(running) and page.calls_to("update_incident"))
    time.sleep(1.0)  # a warning from a failed first try would have been posted by now
    public_id = running.bot.store.get(1).statuspage_id
    assert page.incident(public_id)["status"] == "monitoring"
    thread = running.slack.thread("C0INCIDENT", announcement.ts)
    assert not [m for m in thread if "status page" in m.all_text.lower()], [m.all_text for m in thread]
    assert [d.status for d in running.bot.store.deliveries(1, kind="statuspage")] == ["sent", "sent"]


def test_the_resolve_button_resolves_the_public_incident(world):
    running, page = world
    declare_acked(running)
    public_id = public_incident(running, page)
    announcement = running.slack.wait_for_message("C0INCIDENT", "INC-1 ·", with_button="incident_resolve")

    running.click(announcement.button("incident_resolve"), user="U0ALICE", channel="C0INCIDENT")
    form = running.slack.wait_for_view("resolve_modal")
    running.platform.submit_view(form, {"resolve_summary": "Index rebuilt"}, user="U0ALICE")

    running.slack.wait_for(lambda: page.incident(public_id)["status"] == "resolved")
    public = page.incident(public_id)
    assert public["resolved_at"] and public["incident_updates"][0]["status"] == "resolved"
    assert running.bot.store.get(1).resolved_at is not None
