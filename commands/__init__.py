"""The registry of `/incident` subcommands: verb -> module.

`help`, the dispatcher and the manifest test all read this one table. Each module declares
USAGE, SUMMARY, NEEDS_INCIDENT and `handle(ctx, req) -> Reply`, and may declare ACTIONS
(action_id -> handler for its buttons) and VIEWS (callback_id -> handler for its modals).
What a command owes Slack later is a delivery, sent by the feature that owns its kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from bot.context import CommandRequest, Context, Reply
from bot.permissions import Owners

# Order is the order `help` shows them in.
VERBS = (
    "declare",
    "ack",
    "update",
    "severity",
    "page",
    "role",
    "diagnose",
    "rollback",
    "scale",
    "verify",
    "resolve",
    "note",
    "timeline",
    "catchup",
    "followup",
    "postmortem",
    "reopen",
    "stats",
    "list",
    "runbook",
    "oncall",
    "help",
)


@dataclass(frozen=True)
class Subcommand:
    verb: str
    usage: str
    summary: str
    needs_incident: bool
    handle: Callable[[Context, CommandRequest], Reply]
    actions: dict[str, Callable[..., Any]] = field(default_factory=dict)
    views: dict[str, Callable[..., Any]] = field(default_factory=dict)


def _load(verb: str) -> Subcommand:
    module: ModuleType = importlib.import_module(f"commands.{verb}")
    return Subcommand(
        verb=verb,
        usage=module.USAGE,
        summary=module.SUMMARY,
        needs_incident=getattr(module, "NEEDS_INCIDENT", False),
        handle=module.handle,
        actions=getattr(module, "ACTIONS", {}),
        views=getattr(module, "VIEWS", {}),
    )


REGISTRY: dict[str, Subcommand] = {verb: _load(verb) for verb in VERBS}

# Modules that are not verbs but own buttons (ACTIONS), e.g. the proposals alerts post.
BUTTON_MODULES = ("alert_proposal",)


def actions() -> dict[str, Callable[..., Any]]:
    table: dict[str, Callable[..., Any]] = {}
    modules = [sub.actions for sub in REGISTRY.values()]
    modules += [importlib.import_module(f"commands.{name}").ACTIONS for name in BUTTON_MODULES]
    for module_actions in modules:
        for action_id, handler in module_actions.items():
            assert action_id not in table, f"action {action_id} registered twice"
            table[action_id] = handler
    return table


def views() -> dict[str, Callable[..., Any]]:
    return {callback: handler for sub in REGISTRY.values() for callback, handler in sub.views.items()}


def owners() -> Owners:
    """What the permission gate must know of this registry: every verb, and the verb whose module
    owns each button and form ("" for a button module that is no verb)."""
    verbs = {action_id: sub.verb for sub in REGISTRY.values() for action_id in sub.actions}
    return Owners(
        verbs=tuple(REGISTRY),
        buttons={action_id: verbs.get(action_id, "") for action_id in actions()},
        views={callback_id: sub.verb for sub in REGISTRY.values() for callback_id in sub.views},
    )
