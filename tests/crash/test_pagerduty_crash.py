"""A SIGKILL between a change and its PagerDuty event: the event is sent once after the restart.

The bot runs as a real `incident-bot serve` subprocess against the Slack and PagerDuty sandboxes
of the test process. PagerDuty holds the trigger's request open (it never answers) while the bot
is killed; after the restart the delivery, left `sending`, is sent again, and PagerDuty has it once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain.pagerduty import dedup_key
from bot.sandbox.pagerduty import ROUTING_KEY, PagerDutySandbox
from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from bot.store import Store
from tests.restarts.test_restart import RESTART_CONFIG, BotProcess

SECRET = "crash-webhook-secret"
CONFIG = RESTART_CONFIG + "pagerduty: {routing_key_env: PD_KEY, severities: [P1], webhook_secret_env: PD_SECRET}\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[SlackSandbox, PagerDutySandbox, BotProcess]]:
    with SlackSandbox() as slack, PagerDutySandbox() as pd:
        bot = BotProcess(tmp_path, slack)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(CONFIG, encoding="utf-8")
        bot.env.update({"PD_KEY": ROUTING_KEY, "PD_SECRET": SECRET, "PAGERDUTY_EVENTS_URL": pd.events_url})
        bot.start()
        try:
            yield slack, pd, bot
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()


def test_a_kill_while_the_trigger_is_in_flight_sends_it_once_after_the_restart(world, tmp_path):
    slack, pd, bot = world
    pd.hang()
    platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
    assert platform.command("declare p1 Checkout returns 500", user="U0ALICE").status == 200
    slack.wait_for_dm("U0PRIMARY", "You are paged")
    db = bot.env["INCIDENT_BOT_DB"]
    slack.wait_for(lambda: any(d.status == "sending" for d in Store(db).deliveries(1, kind="pagerduty")))
    bot.kill()
    pd.heal()  # the held request ends without PagerDuty taking the event
    assert not pd.accepted()

    bot.start()
    slack.wait_for(lambda: pd.accepted("trigger"), timeout=20)
    store = Store(db)
    incident = store.get(1)
    assert incident is not None
    slack.wait_for(
        lambda: all(d.status in ("sent", "cancelled") for d in store.deliveries(1, kind="pagerduty")), timeout=15
    )
    sent = [d for d in store.deliveries(1, kind="pagerduty") if d.status == "sent"]
    triggers = [e for e in pd.accepted("trigger") if e["dedup_key"] == dedup_key(incident)]
    assert len(triggers) == len(sent) and sent[0].target == "trigger"
    assert len(pd.alerts) == 1
