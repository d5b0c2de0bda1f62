"""views.publish in the Slack sandbox: no kinder than Slack (a home view, at most 100 blocks, a
known user, the Home tab enabled)."""

from __future__ import annotations

import pytest
from slack_sdk.errors import SlackApiError

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as exc:
        call()
    return exc.value.response["error"]


def test_a_home_view_is_published_and_replaced_whole(sandbox, client):
    first = client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": [SECTION]})["view"]
    again = client.views_publish(user_id="U0ALICE", view={"type": "home", "blocks": [SECTION, SECTION]})["view"]
    assert first["id"] == again["id"] and first["type"] == "home"
    assert len(sandbox.home_view("U0ALICE")["blocks"]) == 2
    assert sandbox.home_view("U0BOB") is None


def test_what_slack_refuses(sandbox, client):
    home = {"type": "home", "blocks": [SECTION]}
    assert error_of(lambda: client.views_publish(user_id="U0NOBODY", view=home)) == "invalid_arguments"
    assert (
        error_of(lambda: client.views_publish(user_id="U0ALICE", view={**home, "type": "modal"})) == "invalid_arguments"
    )
    too_many = {"type": "home", "blocks": [SECTION] * 101}
    assert error_of(lambda: client.views_publish(user_id="U0ALICE", view=too_many)) == "invalid_arguments"
    sandbox.home_tab_enabled = False
    assert error_of(lambda: client.views_publish(user_id="U0ALICE", view=home)) == "not_enabled"
