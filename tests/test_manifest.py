"""The manifest must grant every Web API method the code calls, and `help` must match the registry."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import commands

ROOT = Path(__file__).resolve().parent.parent

# Bot-token scopes each method needs (Slack's method reference); one of the listed sets suffices.
METHOD_SCOPES: dict[str, tuple[frozenset[str], ...]] = {
    "auth.test": (frozenset(),),
    "chat.postMessage": (frozenset({"chat:write"}),),
    "chat.update": (frozenset({"chat:write"}),),
    "chat.delete": (frozenset({"chat:write"}),),
    "chat.postEphemeral": (frozenset({"chat:write"}),),
    "conversations.create": (frozenset({"channels:manage"}),),
    "conversations.setTopic": (frozenset({"channels:manage"}), frozenset({"channels:write.topic"})),
    "conversations.invite": (frozenset({"channels:manage"}), frozenset({"channels:write.invites"})),
    "conversations.open": (frozenset({"im:write"}),),
    "conversations.history": (frozenset({"channels:history", "im:history"}),),
    "conversations.replies": (frozenset({"channels:history", "im:history"}),),
    "conversations.list": (frozenset({"channels:read"}),),
    "users.lookupByEmail": (frozenset({"users:read", "users:read.email"}),),
    "views.open": (frozenset(),),
}


SLACK_FAMILIES = {
    "auth",
    "bookmarks",
    "chat",
    "conversations",
    "files",
    "pins",
    "reactions",
    "team",
    "usergroups",
    "users",
    "views",
}


def methods_called() -> set[str]:
    """Every `client.<method>(` call in bot/ and commands/, as a Web API method name."""
    found = set()
    for path in [*ROOT.joinpath("bot").glob("*.py"), *ROOT.joinpath("commands").glob("*.py")]:
        for name in re.findall(r"\bclient\.([a-z]+_[A-Za-z]+)\(", path.read_text(encoding="utf-8")):
            family, _, verb = name.partition("_")
            if family in SLACK_FAMILIES:
                found.add(f"{family}.{verb}")
    return found


def manifest() -> dict:
    return yaml.safe_load(ROOT.joinpath("manifest.yaml").read_text(encoding="utf-8"))


def test_the_scan_finds_the_calls_it_should():
    assert {"chat.postMessage", "conversations.create", "users.lookupByEmail"} <= methods_called()


def test_manifest_scopes_cover_every_web_api_method_the_code_calls():
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    for method in sorted(methods_called()):
        assert method in METHOD_SCOPES, f"{method} is called but its scopes are not known to this test"
        assert any(needed <= scopes for needed in METHOD_SCOPES[method]), f"{method} needs {METHOD_SCOPES[method]}"
    assert "commands" in scopes


def test_manifest_routes_the_command_and_interactivity_to_slack_events():
    data = manifest()
    [command] = data["features"]["slash_commands"]
    assert command["command"] == "/incident"
    assert command["url"].endswith("/slack/events")
    assert command["should_escape"] is True
    assert data["settings"]["interactivity"]["request_url"].endswith("/slack/events")
    assert "socket_mode_enabled" in data["settings"]


def test_every_subcommand_in_help_is_handled_and_every_handled_one_is_in_help():
    from commands.help import usage_text

    listed = set(re.findall(r"`/incident ([a-z]+)", usage_text()))
    assert listed == set(commands.REGISTRY)
    for verb in listed:
        assert callable(commands.REGISTRY[verb].handle)


def test_every_button_the_bot_renders_has_a_handler():
    from bot import ids

    handled = set(commands.actions())
    rendered = {ids.ACK, ids.POST_UPDATE, ids.DIAGNOSE, ids.RESOLVE, ids.ROLLBACK_PROPOSE}
    assert rendered <= handled
