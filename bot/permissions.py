"""Who may do what, enforced: one check for commands, buttons and forms, before every handler.

The rule itself is pure (`bot.domain.access.may`); the catalogue of actions is
`bot.domain.actions`. `require` gathers what the rule needs (the people paged, who holds a
role) and refuses, audited, with a message saying who may. `gate` maps a command, click or form
to its actions and calls `require`: the app calls it before every handler, so a module that
registers a verb or a button is gated without doing anything, and a verb the catalogue does not
know stops the bot at start-up (`check_registry`) instead of running open. What is registered
(`Owners`) is handed in by the app from the command registry, which sits above this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from bot.context import ButtonClick, CommandRequest, Context, ViewErrors, ViewSubmission
from bot.core import text
from bot.core.errors import UsageError
from bot.domain.access import USER_ID, Forbidden, describe_action, may, rule, who_may
from bot.domain.actions import ACTIONS, BUTTON_ACTIONS, PAGED, SCHEDULE_MEMBERS
from bot.domain.deliveries import DeliveryKind, DeliveryStatus
from bot.domain.incidents import Incident
from bot.slack import ids
from bot.slack.grammar import public_flag

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Owners:
    """What is registered, for the gate: the verbs, and which verb's module owns each button
    (action_id -> verb, "" for a module that is no verb) and each form (callback_id -> verb)."""

    verbs: tuple[str, ...]
    buttons: Mapping[str, str]
    views: Mapping[str, str]


# -- what a request asks to do --------------------------------------------------------------


def command_actions(verb: str, args: str) -> tuple[str, ...]:
    """The actions a typed `/incident <verb> <args>` performs (`page` of a person vs a role, `--public`)."""
    words = args.split()
    if verb == "page":
        target = args.strip()
        return ("page_person",) if not target or _is_user(target) else ("page_role",)
    if verb == "oncall" and words[:1] and words[0].lower() == "override":
        return ("oncall_override",)
    if verb in {"update", "declare", "resolve"} and public_flag(verb, args)[0]:
        return (verb, "update_public")
    return (verb,)


def override_schedule(args: str) -> str | None:
    """The rotation `oncall override <schedule> …` or `oncall override clear <schedule>` names."""
    words = [w.lower() for w in args.split()]
    name = words[2] if words[1:2] == ["clear"] else words[1] if len(words) > 1 else None
    return name if name and words[0] == "override" else None


def button_action(action_id: str, owner_verb: str) -> str:
    return BUTTON_ACTIONS.get(action_id, owner_verb)


def _is_user(token: str) -> bool:
    # The same reading commands/page.py makes: a mention Slack sent, a typed <@U…>, or an ID.
    return text.mentioned_user(token) is not None


# -- enforcement ---------------------------------------------------------------------------


def allowed(ctx: Context, action: str, user: str, incident: Incident | None, *, schedule: str | None = None) -> bool:
    """`may`, with the people paged, the rotation's members and the role holders looked up (only
    as far as needed, and from the directory's caches only). `schedule` is the rotation an
    `oncall override` names."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}: add it to bot/domain/actions.py")
    refs = rule(ctx.config, action)
    paged = paged_users(ctx, incident) if PAGED in refs else frozenset()
    # From the caches only, whatever thread asks: a check runs before the ack, which must not
    # wait on Slack. An email or user group not cached yet counts nobody in (and is fetched in
    # the background); the config's own are cached from start-up.
    with ctx.directory.cached_only():
        members: frozenset[str] = frozenset()
        if SCHEDULE_MEMBERS in refs and schedule in ctx.config.schedules:
            members = frozenset(ctx.directory.schedule_members(schedule))
        holders = _Holders(ctx, incident)
        return may(ctx.config, action, user, incident=incident, paged=paged, holders=holders, schedule_members=members)


def require(
    ctx: Context,
    action: str,
    user: str,
    incident: Incident | None,
    *,
    tried: str = "",
    schedule: str | None = None,
) -> None:
    """Raise Forbidden (a UsageError subclass) with a message saying who may do it.

    The refusal is written to the audit log, with the user and what they tried, before it is raised.
    """
    if allowed(ctx, action, user, incident, schedule=schedule):
        return
    ctx.store.record_refusal(
        ctx.now(), user, action, incident.number if incident else None, tried or describe_action(action, incident)
    )
    log.info("refused %s to %s (%s)", action, user, incident.ref if incident else "no incident")
    what = describe_action(action, incident)
    raise Forbidden(
        f"Only {who_may(ctx.config, action, incident, schedule=schedule)} may {what}. "
        "Nothing was changed. (See `permissions` in the config.)",
        action,
        plain=f"Only {who_may(ctx.config, action, incident, plain=True, schedule=schedule)} may {what}.",
    )


def gate(ctx: Context, request: CommandRequest | ButtonClick | ViewSubmission, owners: Owners) -> None:
    """The one check before every handler: a command, a button click or a form submission."""
    if isinstance(request, CommandRequest):
        for action in command_actions(request.verb, request.args):
            schedule = override_schedule(request.args) if action == "oncall_override" else None
            unknown_incident = request.incident is None and request.incident_error
            if unknown_incident and not allowed(ctx, action, request.user, None):
                # Not knowing which incident comes first: once it is named, this person may
                # well be its commander. Nothing was refused yet, so nothing is audited.
                raise UsageError(request.incident_error or "", request.usage)
            require(ctx, action, request.user, request.incident, tried=_tried(request), schedule=schedule)
        return
    if isinstance(request, ButtonClick):
        action = button_action(request.action_id, owners.buttons[request.action_id])
        tried = f"the {request.action_id} button (value {request.value[:100]!r})"
        names_an_incident = request.value.split(":", 1)[0].isdecimal()
        if request.incident is None and names_an_incident and not allowed(ctx, action, request.user, None):
            # A button of an incident that is gone: say so, as the handler would, rather than
            # refuse a person who may well have been on it. Nothing was refused, nothing audited.
            raise UsageError("That incident no longer exists.")
        require(ctx, action, request.user, request.incident, tried=tried)
        return
    _gate_submission(ctx, request, owners)


def _gate_submission(ctx: Context, submission: ViewSubmission, owners: Owners) -> None:
    verb = owners.views[submission.callback_id]
    number = str(submission.metadata.get("incident", ""))
    incident = ctx.store.get(int(number)) if number.isdigit() else None
    actions = [verb]
    # The status-page tick of the declare and update forms, and of the resolve form.
    tick = next((b for b in (ids.PUBLIC_BLOCK, ids.RESOLVE_PUBLIC_BLOCK) if submission.values.get(b)), None)
    if tick is not None:
        actions.append("update_public")
    for action in actions:
        try:
            require(ctx, action, submission.user, incident, tried=f"the {submission.callback_id} form")
        except Forbidden as exc:
            block = tick if action == "update_public" and tick else next(iter(submission.values), "")
            # A form shows errors beside its fields as plain text, at most 150 characters each.
            text = exc.plain if len(exc.plain) <= 150 else exc.plain[:149] + "…"
            raise ViewErrors({block: text}) from None


def check_registry(owners: Owners) -> None:
    """Every registered verb, button and form maps to a known action: a new verb is never open."""
    unknown = [verb for verb in owners.verbs if not set(command_actions(verb, "")) <= set(ACTIONS)]
    unknown += [f"button {a}" for a, verb in owners.buttons.items() if button_action(a, verb) not in ACTIONS]
    unknown += [f"form {c}" for c, verb in owners.views.items() if verb not in ACTIONS]
    if unknown:
        raise RuntimeError(f"no permission rule for {', '.join(unknown)}: add them to bot/domain/actions.py")


def _tried(request: CommandRequest) -> str:
    ref = f" {request.incident.ref}" if request.incident is not None else ""
    text = f"/incident {request.verb}{ref} {request.args}".strip()
    return text if len(text) <= 300 else text[:299] + "…"


def paged_users(ctx: Context, incident: Incident | None) -> frozenset[str]:
    """Everyone a page for the incident went, or is going, to (a role's page counts once expanded)."""
    if incident is None:
        return frozenset()
    users = set()
    for page in ctx.store.deliveries(incident.number, kind=DeliveryKind.PAGE):
        if page.status == DeliveryStatus.CANCELLED:
            continue
        if page.user:
            users.add(page.user)
        elif USER_ID.match(page.target):
            users.add(page.target)
    return frozenset(users)


class _Holders(Mapping[str, frozenset[str]]):
    """Who a role name or email means, looked up only when the rule gets that far."""

    def __init__(self, ctx: Context, incident: Incident | None) -> None:
        self._resolve: Callable[[str], tuple[list[str], list[str]]] = lambda ref: ctx.directory.resolve(ref, incident)
        self._cache: dict[str, frozenset[str]] = {}

    def __getitem__(self, ref: str) -> frozenset[str]:
        if ref not in self._cache:
            try:
                users, _ = self._resolve(ref)
            except Exception as exc:  # noqa: BLE001 - an unreachable directory grants nothing
                log.warning("could not resolve %s for a permission check: %s", ref, exc)
                users = []
            self._cache[ref] = frozenset(users)
        return self._cache[ref]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)
