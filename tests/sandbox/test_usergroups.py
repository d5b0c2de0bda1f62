"""The sandbox's usergroups.list and usergroups.users.list answer as Slack does."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.constants import DEFAULT_SCOPES

TOKEN = "xoxb-sandbox"


def test_usergroups_list_leaves_out_users_counts_and_disabled_groups_unless_asked(sandbox, client):
    team = sandbox.add_usergroup("oncall-team", ["U0ALICE", "U0BOB"], name="On-call team")
    old = sandbox.add_usergroup("old-team", ["U0CEO"])
    sandbox.disable_usergroup(old.id)

    [group] = client.usergroups_list()["usergroups"]
    assert group["id"] == team.id and group["id"].startswith("S")
    assert group["handle"] == "oncall-team" and group["name"] == "On-call team"
    assert group["is_usergroup"] is True and group["date_delete"] == 0
    assert "users" not in group and "user_count" not in group

    everything = client.usergroups_list(include_users=True, include_count=True, include_disabled=True)["usergroups"]
    assert [(g["handle"], g["users"], g["user_count"]) for g in everything] == [
        ("oncall-team", ["U0ALICE", "U0BOB"], 2),
        ("old-team", ["U0CEO"], 1),
    ]
    assert everything[1]["date_delete"] > 0


def test_usergroups_users_list_answers_members_and_refuses_unknown_or_disabled_groups(sandbox, client):
    team = sandbox.add_usergroup("oncall-team", ["U0ALICE"])
    assert client.usergroups_users_list(usergroup=team.id)["users"] == ["U0ALICE"]
    with pytest.raises(SlackApiError) as unknown:
        client.usergroups_users_list(usergroup="S0NOPE")
    assert unknown.value.response["error"] == "no_such_subteam"
    sandbox.disable_usergroup(team.id)
    with pytest.raises(SlackApiError) as disabled:
        client.usergroups_users_list(usergroup=team.id)
    assert disabled.value.response["error"] == "no_such_subteam"
    assert client.usergroups_users_list(usergroup=team.id, include_disabled=True)["users"] == ["U0ALICE"]


def test_usergroups_need_the_usergroups_read_scope():
    with SlackSandbox(scopes=DEFAULT_SCOPES - {"usergroups:read"}) as world:
        client = WebClient(token=TOKEN, base_url=world.api_url)
        with pytest.raises(SlackApiError) as refused:
            client.usergroups_list()
        assert refused.value.response["error"] == "missing_scope"
        assert refused.value.response["needed"] == "usergroups:read"
