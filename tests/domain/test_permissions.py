"""Who may do what, as a pure rule: defaults, custom entries, config errors, the verb table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

import commands
from bot import config, permissions
from bot.domain import access, actions
from bot.domain.access import may, who_may
from bot.domain.incidents import Incident

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DEFAULT = config.parse(config.default_config_text(), source="built-in default")
INC = Incident(
    number=7,
    title="Checkout down",
    severity="P1",
    status="investigating",
    commander="U0ALICE",
    declared_by="U0ALICE",
    declared_at=T0,
    scribe="U0SCRIBE",
)
# Issue 9's defaults, written out here independently of bot/permissions.py; `ack` left `anyone`
# in issue 21 (any channel member could stop a P1's escalation), and is tested on its own below.
ANYONE = {"declare", "update", "note", "diagnose", "list", "runbook", "oncall", "timeline", "stats", "help"}
RESPONDERS = {"resolve", "reopen", "severity", "role", "page_role", "update_public"}


def allowed(cfg: config.Config, action: str, user: str, *, paged: frozenset[str] = frozenset(), **holders) -> bool:
    people = {role: frozenset(h for h in holders_ if h.startswith("U")) for role, holders_ in cfg.people.items()}
    people.update({k: frozenset(v) for k, v in holders.items()})
    return may(cfg, action, user, incident=INC, paged=paged, holders=people)


@pytest.mark.parametrize("action", sorted(ANYONE | {"page_person"}))
def test_an_outsider_may_do_what_anyone_may(action):
    assert allowed(DEFAULT, action, "U0BOB")


@pytest.mark.parametrize("action", sorted(RESPONDERS | {"rollback", "scale"}))
def test_an_outsider_may_not_do_what_responders_may(action):
    assert not allowed(DEFAULT, action, "U0BOB")


@pytest.mark.parametrize("action", sorted(RESPONDERS))
@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("U0ALICE", "commander"),
        ("U0SCRIBE", "scribe"),
        ("U0CEO", "paged"),
        ("U0PRIMARY", "oncall_primary"),
        ("U0SECOND", "oncall_secondary"),
    ],
)
def test_responders_are_role_holders_the_paged_and_the_on_call(action, who, why):
    assert allowed(DEFAULT, action, who, paged=frozenset({"U0CEO"})), why


def test_the_commander_of_another_incident_is_not_a_responder_here():
    other = replace(INC, commander="U0BOB", scribe=None)
    assert not may(DEFAULT, "resolve", "U0ALICE", incident=other, paged=frozenset(), holders={})
    assert not may(DEFAULT, "resolve", "U0ALICE", incident=None, paged=frozenset(), holders={})


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("U0ALICE", "commander"),
        ("U0CEO", "on the P1 path (step 4), not yet paged"),
        ("U0PRIMARY", "on call"),
        ("U0VP", "vp_product, by email, on the P1 path"),
        ("U0HANDPAGED", "paged by hand"),
    ],
)
def test_ack_is_for_responders_and_the_escalation_path(who, why):
    assert allowed(DEFAULT, "ack", who, paged=frozenset({"U0HANDPAGED"}), vp_product=frozenset({"U0VP"})), why


def test_an_outsider_may_not_ack_and_the_refusal_names_the_path():
    assert not allowed(DEFAULT, "ack", "U0BOB")
    assert DEFAULT.permissions["ack"] == ("responders", "escalation_path")
    assert "the people on INC-7's escalation path" in who_may(DEFAULT, "ack", INC)
    # The path is the incident's own severity's: the CEO is on P1's, not on P3's.
    p3 = replace(INC, severity="P3")
    assert allowed(DEFAULT, "ack", "U0CEO") and not may(
        DEFAULT, "ack", "U0CEO", incident=p3, paged=frozenset(), holders={"ceo": frozenset({"U0CEO"})}
    )


def test_rollback_and_scale_follow_rollback_allowed():
    # Built-in: [incident_commander, oncall_primary, tech_lead]; the scribe and the paged are not in it.
    assert allowed(DEFAULT, "rollback", "U0ALICE") and allowed(DEFAULT, "scale", "U0LEAD")
    assert not allowed(DEFAULT, "rollback", "U0SCRIBE", paged=frozenset({"U0SCRIBE"}))


def test_a_role_held_by_an_email_is_resolved_through_holders():
    cfg = config.parse(
        config.default_config_text().replace("  severity: [responders]", "  severity: [vp_product]"), "t"
    )
    assert allowed(cfg, "severity", "U0VP", vp_product=frozenset({"U0VP"}))
    assert not allowed(cfg, "severity", "U0ALICE")  # the entry replaces the default: the commander is out


def test_roles_are_looked_up_only_when_cheaper_refs_did_not_decide():
    asked: list[str] = []

    class Holders(dict):
        def get(self, key, default=None):
            asked.append(key)
            return frozenset()

    assert may(DEFAULT, "resolve", "U0ALICE", incident=INC, paged=frozenset(), holders=Holders())
    assert asked == []


def test_who_may_names_the_roles_and_mentions_user_ids():
    text = who_may(DEFAULT, "resolve", INC)
    assert "INC-7's commander, scribe or comms" in text and "people paged for INC-7" in text
    assert "`oncall_primary`" in text and "`oncall_secondary`" in text
    cfg = config.parse(config.default_config_text().replace("  resolve: [responders]", "  resolve: [U0BOB]"), "t")
    assert who_may(cfg, "resolve", INC) == "<@U0BOB>"


def test_a_custom_entry_replaces_the_default():
    cfg = config.parse(config.default_config_text() + "  rollback: [U0BOB]\n", source="t")
    assert cfg.permissions["rollback"] == ("U0BOB",)
    assert allowed(cfg, "rollback", "U0BOB") and not allowed(cfg, "rollback", "U0ALICE")


def test_without_a_permissions_section_the_defaults_apply():
    text = config.default_config_text().split("\npermissions:")[0]
    cfg = config.parse(text, source="t")
    assert cfg.permissions == DEFAULT.permissions
    assert {a for a, refs in cfg.permissions.items() if refs == ("anyone",)} == ANYONE | {
        "page_person",
        "followup",
        "catchup",  # issue 23: reads what `timeline` reads
        "verify",  # issue 20: watching a fix changes nothing, so anyone may
    }
    assert {a for a, refs in cfg.permissions.items() if refs == ("responders",)} == RESPONDERS | {
        "postmortem",
        "dismiss_alert",
    }
    # Who is on call is for the people on call and the rotation's own members (issue 11).
    assert cfg.permissions["oncall_override"] == ("responders", "schedule_members")
    assert cfg.permissions["ack"] == ("responders", "escalation_path")


def test_describe_round_trips_the_permissions():
    again = config.parse(config.describe(DEFAULT), source="again")
    assert again.permissions == DEFAULT.permissions


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ("  resolvee: [anyone]", "permissions.resolvee"),
        ("  resolve: [oncall_primry]", "permissions.resolve[0]"),
        ("  severity: [incident_captain]", "permissions.severity[0]"),
        ("  severity: []", "permissions.severity"),
    ],
)
def test_an_unknown_action_or_role_is_a_config_error_naming_the_key(entry, key):
    action = entry.strip().split(":", 1)[0]
    default = f"  {action}: [responders]\n"
    base = config.default_config_text()
    # Replace the action's default line (a key given twice is an error of its own), or add a new one.
    text = base.replace(default, entry + "\n") if default in base else base + entry + "\n"
    with pytest.raises(config.ConfigError) as caught:
        config.parse(text, source="t")
    assert any(error.startswith(f"{key}:") for error in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(
    ("verb", "args", "actions"),
    [
        ("page", "<@U0CEO|ceo>", ("page_person",)),
        ("page", "U0CEO", ("page_person",)),
        ("page", "oncall_secondary", ("page_role",)),
        ("update", "--public identified Bad index", ("update", "update_public")),
        ("update", "identified --public is a word here", ("update",)),
        ("declare", "p1 --public Checkout down", ("declare", "update_public")),
        ("declare", "--public p1 Checkout down", ("declare", "update_public")),
        ("resolve", "--public Rolled back", ("resolve", "update_public")),
        ("resolve", "Rolled back", ("resolve",)),
        ("oncall", "override primary <@U0BOB> 2h", ("oncall_override",)),
        ("oncall", "", ("oncall",)),
    ],
)
def test_what_a_command_asks_to_do(verb, args, actions):
    assert permissions.command_actions(verb, args) == actions


def test_every_registered_verb_button_and_form_has_a_rule():
    permissions.check_registry(commands.owners())
    for verb in commands.REGISTRY:
        assert set(permissions.command_actions(verb, "")) <= set(actions.ACTIONS)


def test_a_verb_without_a_rule_stops_the_bot_at_start_up(monkeypatch):
    help_sub = commands.REGISTRY["help"]
    monkeypatch.setitem(commands.REGISTRY, "frobnicate", replace(help_sub, verb="frobnicate"))
    with pytest.raises(RuntimeError, match="frobnicate"):
        permissions.check_registry(commands.owners())


def test_a_button_without_a_rule_stops_the_bot_at_start_up(monkeypatch):
    help_sub = commands.REGISTRY["help"]
    odd = replace(help_sub, verb="frobnicate", actions={"frob_button": help_sub.handle})
    monkeypatch.setitem(commands.REGISTRY, "frobnicate", odd)
    with pytest.raises(RuntimeError, match="frob_button"):
        permissions.check_registry(commands.owners())


def test_an_unknown_action_is_a_programming_error_not_a_silent_yes():
    with pytest.raises(KeyError):
        access.rule(replace(DEFAULT, permissions={}), "frobnicate")


def test_every_action_has_words_for_its_refusal():
    assert set(actions.PHRASES) == set(actions.ACTIONS)
    assert access.describe_action("resolve", INC) == "resolve INC-7"
    assert access.describe_action("update_public", None) == "post an incident to the status page"


def test_the_sandbox_refuses_a_malformed_confirm_dialog_as_slack_does():
    from bot.sandbox.slack.blockkit import validate_blocks
    from bot.slack.blocks import incident as blocks

    good = [{"type": "actions", "elements": blocks.announcement_buttons(INC)}]
    bad_dialog = {"title": {"type": "mrkdwn", "text": "t"}, "text": {"type": "plain_text", "text": "y" * 301}}
    bad = [{"type": "actions", "elements": [blocks.button("Resolve", "incident_resolve", "7", confirm=bad_dialog)]}]

    assert validate_blocks(good) == []
    errors = " ".join(validate_blocks(bad))
    assert "confirm/title/type" in errors and "confirm/text/text" in errors and "missing required field: deny" in errors
