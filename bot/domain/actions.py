"""The permission catalogue: every action the bot gates, who may do each by default, and the words
for a refusal. A leaf: the config validates `permissions:` against it, and `bot.domain.access`
applies it.

An action is a verb (`resolve`), or a finer name where one verb does things of different weight:

    page_person      `/incident page @alice`           page_role      `/incident page oncall_secondary`
    update_public    `--public` on update, declare or resolve, or the status-page tick in a form
    oncall_override  `/incident oncall override …`     rollback, scale  the confirmed Google Cloud changes
"""

from __future__ import annotations

ANYONE = "anyone"
RESPONDERS = "responders"
PAGED = "paged"
SCHEDULE_MEMBERS = "schedule_members"  # the members of the rotation an `oncall override` names
ESCALATION_PATH = "escalation_path"  # everyone the incident's severity pages at any step
INCIDENT_ROLE_REFS = {"incident_commander": "commander", "incident_scribe": "scribe", "incident_comms": "comms"}
ONCALL_PREFIX = "oncall"
SPECIAL_REFS = frozenset({ANYONE, RESPONDERS, PAGED, SCHEDULE_MEMBERS, ESCALATION_PATH, *INCIDENT_ROLE_REFS})

# The defaults of issue 9 (README "Who may do what"). `rollback` and `scale` default to
# `rollback.allowed`. Verbs that other modules add later are listed so that they are gated the
# moment they land.
ANYONE_ACTIONS = (
    "declare",
    "update",
    "note",
    "diagnose",
    "verify",
    "list",
    "runbook",
    "oncall",
    "timeline",
    "catchup",
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
# Acknowledging stops the escalation (and with it the pages to the people above): the responders
# and whoever the incident's path would page may, not every member of the channel.
ACK_ACTIONS = ("ack",)
# Who is on call is the business of the people on call and of the rotation's own members.
SCHEDULE_ACTIONS = ("oncall_override",)
ACTIONS = ANYONE_ACTIONS + ACK_ACTIONS + RESPONDER_ACTIONS + ROLLBACK_ACTIONS + SCHEDULE_ACTIONS

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
    "verify": "verify a fix",
    "list": "list incidents",
    "runbook": "read the runbook",
    "oncall": "see who is on call",
    "oncall_override": "override the on-call schedule",
    "timeline": "read the timeline of {ref}",
    "catchup": "read the catch-up of {ref}",
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


def default_rule(action: str, rollback_allowed: tuple[str, ...]) -> tuple[str, ...]:
    if action in ANYONE_ACTIONS:
        return (ANYONE,)
    if action in RESPONDER_ACTIONS:
        return (RESPONDERS,)
    if action in ROLLBACK_ACTIONS:
        return rollback_allowed
    if action in SCHEDULE_ACTIONS:
        return (RESPONDERS, SCHEDULE_MEMBERS)
    if action in ACK_ACTIONS:
        return (RESPONDERS, ESCALATION_PATH)
    raise KeyError(f"unknown action {action!r}")
