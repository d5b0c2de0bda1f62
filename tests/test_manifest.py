"""The manifest must grant every Web API method the code calls, and `help` must match the registry."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import yaml

import commands
from bot.sandbox.runner import SandboxedBot
from tests.conftest import FAST_CONFIG

ROOT = Path(__file__).resolve().parent.parent

# Bot-token scopes each method needs (Slack's method reference); one of the listed sets suffices.
METHOD_SCOPES: dict[str, tuple[frozenset[str], ...]] = {
    "auth.test": (frozenset(),),
    "chat.postMessage": (frozenset({"chat:write"}),),
    "chat.update": (frozenset({"chat:write"}),),
    "chat.delete": (frozenset({"chat:write"}),),
    "chat.postEphemeral": (frozenset({"chat:write"}),),
    "chat.getPermalink": (frozenset(),),  # Slack: no scope required
    "conversations.create": (frozenset({"channels:manage"}),),
    "conversations.setTopic": (frozenset({"channels:manage"}), frozenset({"channels:write.topic"})),
    "conversations.invite": (frozenset({"channels:manage"}), frozenset({"channels:write.invites"})),
    "conversations.join": (frozenset({"channels:join"}),),
    "conversations.open": (frozenset({"im:write"}),),
    "conversations.history": (frozenset({"channels:history", "im:history"}),),
    "conversations.replies": (frozenset({"channels:history", "im:history"}),),
    "conversations.list": (frozenset({"channels:read"}),),
    "users.lookupByEmail": (frozenset({"users:read", "users:read.email"}),),
    "users.info": (frozenset({"users:read"}),),
    "usergroups.list": (frozenset({"usergroups:read"}),),
    "usergroups.users.list": (frozenset({"usergroups:read"}),),
    "views.open": (frozenset(),),
    "views.publish": (frozenset(),),  # no scope; the Home tab must be enabled (features.app_home)
    # files_upload_v2 = files.getUploadURLExternal + upload + files.completeUploadExternal
    "files.upload_v2": (frozenset({"files:write"}),),
    "files.info": (frozenset({"files:read"}),),
    # The draft's upload, made step by step so the file's id is stored before Slack shares it.
    "files.getUploadURLExternal": (frozenset({"files:write"}),),
    "files.completeUploadExternal": (frozenset({"files:write"}),),
    "files.delete": (frozenset({"files:write"}),),
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


def bot_sources() -> list[Path]:
    """Every module of the bot itself, at any depth of bot/ and commands/: the sandbox is the
    world the bot talks to, not the bot, so it is left out."""
    sandbox = ROOT / "bot" / "sandbox"
    paths = [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("commands").rglob("*.py")]
    return sorted(p for p in paths if sandbox not in p.parents)


def test_the_scan_reaches_modules_in_subpackages():
    # A module moved into a package must stay in scope of the scope and button checks.
    found = {p.relative_to(ROOT).as_posix() for p in bot_sources()}
    assert {"bot/app/runtime.py", "bot/store/__init__.py", "commands/declare.py"} <= found
    assert not any(p.startswith("bot/sandbox/") for p in found)


def methods_called() -> set[str]:
    """Every `client.<method>(` call in bot/ and commands/, as a Web API method name."""
    found = set()
    for path in bot_sources():
        for name in re.findall(r"\bclient\.([a-z]+_[A-Za-z0-9_]+)\(", path.read_text(encoding="utf-8")):
            family, _, verb = name.partition("_")
            if family in SLACK_FAMILIES:
                # slack_sdk spells usergroups.users.list as usergroups_users_list; files_upload_v2
                # is its helper for three calls, kept whole under that name.
                found.add(f"{family}.{verb if verb == 'upload_v2' else verb.replace('_', '.')}")
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


def test_manifest_subscribes_to_the_events_the_bot_handles():
    data = manifest()
    events = data["settings"]["event_subscriptions"]
    assert events["request_url"].endswith("/slack/events")
    assert "reaction_added" in events["bot_events"]
    scopes = set(data["oauth_config"]["scopes"]["bot"])
    # reaction_added needs reactions:read; the pinned message is read from public or private war rooms.
    assert {"reactions:read", "channels:history", "groups:history"} <= scopes
    # member_joined_channel needs channels:read for public war rooms (Slack's event reference).
    assert "member_joined_channel" in events["bot_events"]
    # app_home_opened needs no scope, but views.publish answers not_enabled without the Home tab.
    assert "app_home_opened" in events["bot_events"]
    assert data["features"]["app_home"]["home_tab_enabled"] is True
    assert "channels:read" in scopes


def test_every_subcommand_in_help_is_handled_and_every_handled_one_is_in_help():
    from commands.help import usage_text

    listed = set(re.findall(r"`/incident ([a-z]+)", usage_text()))
    assert listed == set(commands.REGISTRY)
    for verb in listed:
        assert callable(commands.REGISTRY[verb].handle)


def _action_id(node: ast.expr, where: str) -> str:
    """An action_id expression as the string it is: a literal, `ids.X`, or a name from bot.slack.ids."""
    from bot.slack import ids

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ids":
        return str(getattr(ids, node.attr))
    if isinstance(node, ast.Name) and hasattr(ids, node.id):
        return str(getattr(ids, node.id))
    raise AssertionError(f"{where}: a button's action_id must be a constant from bot/ids.py, got {ast.unparse(node)}")


def buttons_drawn_in_code() -> set[str]:
    """Every button action_id the Block Kit builders in bot/ and commands/ can draw: the second
    argument of `button(...)` calls and `{"type": "button", "action_id": ...}` literals."""
    found = set()
    for path in bot_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # The `button()` helper itself draws whatever its callers pass; its callers are scanned.
        helper = {
            id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "button" for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if id(node) in helper:
                continue
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "button":
                arg = (
                    node.args[1] if len(node.args) > 1 else next(k.value for k in node.keywords if k.arg == "action_id")
                )
                found.add(_action_id(arg, where))
            elif isinstance(node, ast.Dict):
                items = {k.value: v for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)}
                kind = items.get("type")
                if isinstance(kind, ast.Constant) and kind.value == "button" and "action_id" in items:
                    found.add(_action_id(items["action_id"], where))
    return found


def test_every_button_the_bot_draws_has_a_handler():
    drawn = buttons_drawn_in_code()
    handled = set(commands.actions())
    assert drawn, "the scan found no buttons"
    assert drawn <= handled, f"buttons without a handler: {sorted(drawn - handled)}"


BUTTONS_CONFIG = FAST_CONFIG.replace(
    """  P2:
    label: High
    ack_within: 60s
    update_every: 60s""",
    """  P2:
    label: High
    ack_within: 60s
    update_every: 2s""",
)


def buttons_in(blocks: object, *, top: bool = True) -> set[str]:
    if top and isinstance(blocks, str):
        blocks = json.loads(blocks)  # the Web API takes blocks as a JSON string too
    found = set()
    if isinstance(blocks, dict):
        if blocks.get("type") == "button" and blocks.get("action_id"):
            found.add(blocks["action_id"])
        for value in blocks.values():
            found |= buttons_in(value, top=False)
    elif isinstance(blocks, list):
        for item in blocks:
            found |= buttons_in(item, top=False)
    return found


def test_the_buttons_slack_receives_are_the_ones_the_scan_finds():
    """A live incident (announcement, page, diagnosis, reminder): every button Slack got is one
    the code scan knows, so the scan above cannot silently miss a builder."""
    with SandboxedBot(config_text=BUTTONS_CONFIG, preset="bad_deploy") as running:
        running.command("declare p2 Checkout errors")
        room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
        running.slack.wait_for_dm("U0PRIMARY", "INC-1", with_button="incident_ack")
        running.command("diagnose", channel=room)
        running.slack.wait_for_message(room, "Diagnosis ·", timeout=15)
        running.slack.wait_for(
            lambda: any(m.has_button("reminder_snooze_30m") for m in running.slack.messages_in(room)), timeout=10
        )
        seen: set[str] = set()
        for call in running.slack.calls:
            seen |= buttons_in(call.params.get("blocks"))
        for post in running.slack.responses():
            seen |= buttons_in(post.blocks)
    from bot.slack import ids

    assert {ids.ACK, ids.POST_UPDATE, ids.DIAGNOSE, ids.RESOLVE, ids.ROLLBACK_PROPOSE, ids.SNOOZE_30M} <= seen
    assert seen <= buttons_drawn_in_code()
    assert seen <= set(commands.actions())
