"""Who may do what: one rule per action, checked in one place for commands, buttons and forms.

An action is a verb (`resolve`), or a finer name where one verb does things of different weight:

    page_person      `/incident page @alice`           page_role      `/incident page oncall_secondary`
    update_public    `--public` on update, declare or resolve, or the status-page tick in a form
    oncall_override  `/incident oncall override …`     rollback, scale  the confirmed Google Cloud changes

A rule is a list of who may: `anyone`; `responders`; `paged` (anyone paged for the incident at
hand); `incident_commander`, `incident_scribe`, `incident_comms` (that role's holder in the incident
at hand); a role under `people`; a user ID; an email. `responders` means the incident's role
holders, anyone paged for it, and every role under `people` whose name starts with `oncall`.

`may` is the rule itself, pure. `require` gathers what the rule needs (the people paged, who holds
a role) and refuses, audited, with a message saying who may. `gate` maps a command, click or form
to its actions and calls `require`: bot/app.py calls it before every handler, so a module that
registers a verb or a button is gated without doing anything, and a verb this table does not know
stops the bot at start-up (`check_registry`) instead of running open.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from bot.core import text
from bot.core.errors import UsageError

if TYPE_CHECKING:
    from bot.config import Config
    from bot.context import ButtonClick, CommandRequest, Context, ViewSubmission
    from bot.domain.incidents import Incident

log = logging.getLogger(__name__)

ANYONE = "anyone"
RESPONDERS = "responders"
PAGED = "paged"
SCHEDULE_MEMBERS = "schedule_members"  # the members of the rotation an `oncall override` names
INCIDENT_ROLE_REFS = {"incident_commander": "commander", "incident_scribe": "scribe", "incident_comms": "comms"}
ONCALL_PREFIX = "oncall"
SPECIAL_REFS = frozenset({ANYONE, RESPONDERS, PAGED, SCHEDULE_MEMBERS, *INCIDENT_ROLE_REFS})

# The defaults of issue 9 (README "Who may do what"). `rollback` and `scale` default to
# `rollback.allowed`. Verbs that other modules add later are listed so that they are gated the
# moment they land.
ANYONE_ACTIONS = (
    "declare",
    "ack",
    "update",
    "note",
    "diagnose",
    "list",
    "runbook",
    "oncall",
    "timeline",
    "stats",
    "help",
    "followup",
    "page_person",
)
RESPONDER_ACTIONS = (
    "resolve",
    "reopen",
    "severity",
    "role",
    "page_role",
    "update_public",
    "postmortem",
    "dismiss_alert",
)
ROLLBACK_ACTIONS = ("rollback", "scale")
# Who is on call is the business of the people on call and of the rotation's own members.
SCHEDULE_ACTIONS = ("oncall_override",)
ACTIONS = ANYONE_ACTIONS + RESPONDER_ACTIONS + ROLLBACK_ACTIONS + SCHEDULE_ACTIONS

# Buttons whose action is not the verb of the module that registers them, and buttons of modules
# that are no verb (alert proposals): every registered button must be in one or the other.
BUTTON_ACTIONS = {"rollback_propose": "rollback", "alert_declare": "declare", "alert_dismiss": "dismiss_alert"}

# What each action is, for "Only … may <this>"; {ref} is the incident at hand.
PHRASES = {
    "declare": "declare incidents",
    "ack": "acknowledge {ref}",
    "update": "post updates to {ref}",
    "note": "add notes to {ref}",
    "diagnose": "run diagnose",
    "list": "list incidents",
    "runbook": "read the runbook",
    "oncall": "see who is on call",
    "oncall_override": "override the on-call schedule",
    "timeline": "read the timeline of {ref}",
    "stats": "see incident stats",
    "help": "get help",
    "followup": "record follow-ups for {ref}",
    "page_person": "page a person for {ref}",
    "page_role": "page a role for {ref}",
    "resolve": "resolve {ref}",
    "reopen": "reopen {ref}",
    "severity": "change the severity of {ref}",
    "role": "assign roles in {ref}",
    "update_public": "post {ref} to the status page",
    "postmortem": "regenerate the post-mortem of {ref}",
    "dismiss_alert": "dismiss an alert",
    "rollback": "roll back the service for {ref}",
    "scale": "scale the service for {ref}",
}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class Forbidden(UsageError):
    """The user may not do this; the message says who may (`plain`: the same without mrkdwn, for forms)."""

    def __init__(self, message: str, action: str, plain: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.plain = plain or message


# -- the rule (pure) ---------------------------------------------------------------------


def default_rule(action: str, rollback_allowed: tuple[str, ...]) -> tuple[str, ...]:
    if action in ANYONE_ACTIONS:
        return (ANYONE,)
    if action in RESPONDER_ACTIONS:
        return (RESPONDERS,)
    if action in ROLLBACK_ACTIONS:
        return rollback_allowed
    if action in SCHEDULE_ACTIONS:
        return (RESPONDERS, SCHEDULE_MEMBERS)
    raise KeyError(f"unknown action {action!r}")


def rule(config: Config, action: str) -> tuple[str, ...]:
    """Who may do `action` under `config`, with `responders` spelt out."""
    refs = config.permissions.get(action) or default_rule(action, config.rollback_allowed)
    expanded: list[str] = []
    for ref in refs:
        if ref == RESPONDERS:
            expanded += [*INCIDENT_ROLE_REFS, PAGED, *oncall_roles(config)]
        else:
            expanded.append(ref)
    return tuple(dict.fromkeys(expanded))


def oncall_roles(config: Config) -> tuple[str, ...]:
    return tuple(role for role in config.people if role.startswith(ONCALL_PREFIX))


def may(
    config: Config,
    action: str,
    user: str,
    *,
    incident: Incident | None,
    paged: frozenset[str],
    holders: Mapping[str, frozenset[str]],
    schedule_members: frozenset[str] = frozenset(),
) -> bool:
    """Whether `user` may do `action` on `incident` (None: no incident at hand).

    `paged` is who has been paged for the incident; `holders` gives the users behind a role name
    or an email. Refs that need no lookup are tried first, so a lazy `holders` is asked only when
    nothing cheaper decided.
    """
    refs = rule(config, action)
    for ref in refs:
        if ref in (ANYONE, user):
            return True
        if ref == PAGED and user in paged:
            return True
        if ref == SCHEDULE_MEMBERS and user in schedule_members:
            return True
        if ref in INCIDENT_ROLE_REFS and incident is not None and incident.role_holder(INCIDENT_ROLE_REFS[ref]) == user:
            return True
    return any(user in holders.get(ref, frozenset()) for ref in refs if ref not in SPECIAL_REFS)


def who_may(
    config: Config, action: str, incident: Incident | None, *, plain: bool = False, schedule: str | None = None
) -> str:
    """'Only …' in words, for the refusal: the roles by name, user IDs as mentions (bare when `plain`)."""
    refs = rule(config, action)
    if incident is None and action in SCHEDULE_ACTIONS:
        # About no incident: incident roles and the people paged for one cannot apply.
        refs = tuple(ref for ref in refs if ref not in INCIDENT_ROLE_REFS and ref != PAGED)
    where = incident.ref if incident is not None else "the incident"
    roles = [ref.removeprefix("incident_") for ref in refs if ref in INCIDENT_ROLE_REFS]
    parts = []
    if roles:
        parts.append(f"{where}'s " + _or(roles))
    if PAGED in refs:
        parts.append(f"people paged for {where}")
    if SCHEDULE_MEMBERS in refs:
        parts.append(f"the members of the {schedule} rotation" if schedule else "the rotation's members")
    mention, quote = ("{}", "{}") if plain else ("<@{}>", "`{}`")
    parts += [(mention if _USER_ID.match(ref) else quote).format(ref) for ref in refs if ref not in SPECIAL_REFS]
    return _or(parts) if parts else "nobody"


def describe_action(action: str, incident: Incident | None) -> str:
    return PHRASES[action].format(ref=incident.ref if incident is not None else "an incident")


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


# -- what a request asks to do --------------------------------------------------------------


def command_actions(verb: str, args: str) -> tuple[str, ...]:
    """The actions a typed `/incident <verb> <args>` performs (`page` of a person vs a role, `--public`)."""
    from bot.slack.grammar import public_flag

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
    as far as needed). `schedule` is the rotation an `oncall override` names."""
    if action not in ACTIONS:
        raise KeyError(f"unknown action {action!r}: add it to bot/permissions.py")
    refs = rule(ctx.config, action)
    paged = paged_users(ctx, incident) if PAGED in refs else frozenset()
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


def gate(ctx: Context, request: CommandRequest | ButtonClick | ViewSubmission) -> None:
    """The one check before every handler: a command, a button click or a form submission."""
    from bot.context import ButtonClick, CommandRequest

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
        action = button_action(request.action_id, _owners()[request.action_id])
        tried = f"the {request.action_id} button (value {request.value[:100]!r})"
        require(ctx, action, request.user, request.incident, tried=tried)
        return
    _gate_submission(ctx, request)


def _gate_submission(ctx: Context, submission: ViewSubmission) -> None:
    from bot.context import ViewErrors
    from bot.slack import ids

    verb = _view_owners()[submission.callback_id]
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


def check_registry() -> None:
    """Every registered verb, button and form maps to a known action: a new verb is never open."""
    from commands import REGISTRY

    unknown = [verb for verb in REGISTRY if not set(command_actions(verb, "")) <= set(ACTIONS)]
    unknown += [f"button {a}" for a, verb in _owners().items() if button_action(a, verb) not in ACTIONS]
    unknown += [f"form {c}" for c, verb in _view_owners().items() if verb not in ACTIONS]
    if unknown:
        raise RuntimeError(f"no permission rule for {', '.join(unknown)}: add them to bot/permissions.py")


def _owners() -> dict[str, str]:
    """Every registered button -> the verb of its module ("" for a module that is no verb)."""
    from commands import REGISTRY, actions

    verbs = {action_id: sub.verb for sub in REGISTRY.values() for action_id in sub.actions}
    return {action_id: verbs.get(action_id, "") for action_id in actions()}


def _view_owners() -> dict[str, str]:
    from commands import REGISTRY

    return {callback_id: sub.verb for sub in REGISTRY.values() for callback_id in sub.views}


def _tried(request: CommandRequest) -> str:
    ref = f" {request.incident.ref}" if request.incident is not None else ""
    text = f"/incident {request.verb}{ref} {request.args}".strip()
    return text if len(text) <= 300 else text[:299] + "…"


def paged_users(ctx: Context, incident: Incident | None) -> frozenset[str]:
    """Everyone a page for the incident went, or is going, to (a role's page counts once expanded)."""
    if incident is None:
        return frozenset()
    users = set()
    for page in ctx.store.deliveries(incident.number, kind="page"):
        if page.status == "cancelled":
            continue
        if page.user:
            users.add(page.user)
        elif _USER_ID.match(page.target):
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
