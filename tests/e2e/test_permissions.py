"""Who may do what, end to end: signed slash commands, clicks and form submissions to the running bot.

The outsider is U0BOB: no role under `people`, no incident role, never paged. Every verb and every
button in the registry is tried as the outsider, so a verb or button added later is covered the
day it lands (and a verb nobody said anything about fails here, loudly).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

import commands
from bot.config import default_config_text
from bot.sandbox.runner import SandboxedBot
from bot.sandbox.statuspage import StatuspageSandbox
from bot.slack import ids

OUTSIDER = "U0BOB"
COMMANDER = "U0ALICE"
STATUSPAGE_KEY = "sp-key-permissions"

# Issue 9's defaults by verb, written out independently of bot/permissions.py.
EXPECTED = {
    **dict.fromkeys(
        ("declare", "update", "note", "diagnose", "list", "runbook", "oncall", "timeline", "stats", "help"),
        "anyone",
    ),
    "followup": "anyone",  # like note: it only adds to the record
    "verify": "anyone",  # issue 20: watching a fix reads and says, it changes nothing
    "catchup": "anyone",  # issue 23: the story so far, to the asker only (its 'anyone' default)
    # Issue 21: acknowledging stops the escalation, so it is for responders and the path's people.
    "ack": "responders",
    **dict.fromkeys(("resolve", "reopen", "severity", "role", "postmortem"), "responders"),
    **dict.fromkeys(("rollback", "scale"), "rollback.allowed"),
}
ARGS = {
    "declare": "p4 Outsider declares",
    "update": "Outsider update",
    "severity": "p1",
    "role": f"commander <@{OUTSIDER}|bob>",
    "resolve": "Fixed it",
    "note": "a note",
    "followup": "a follow-up",
    "scale": "memory 1Gi",
    "runbook": "1",
}
# (verb, args, expected): every registered verb, and the verbs whose arguments change who may.
CASES = [(verb, ARGS.get(verb, ""), EXPECTED.get(verb, "unknown")) for verb in commands.REGISTRY if verb != "page"]
CASES += [
    ("page", "<@U0CEO|ceo>", "anyone"),
    ("page", "oncall_secondary", "responders"),
    ("update", "--public identified Bad index", "responders"),
]
BUTTON_VALUES = {
    ids.SNOOZE_30M: "1:30",
    ids.SNOOZE_1H: "1:60",
    ids.ROLLBACK_PROPOSE: "1:tai-autonomics-00042-bad",
    ids.ALERT_DECLARE: "alert:1",
    ids.ALERT_DISMISS: "alert:1",
}
# Buttons with no verb of their own (alert proposals), or whose rule is not their verb's.
BUTTON_EXPECTED = {
    ids.ROLLBACK_PROPOSE: "rollback.allowed",
    ids.ALERT_DECLARE: "anyone",
    ids.ALERT_DISMISS: "responders",
}
NO_INCIDENT_BUTTONS = {ids.ALERT_DECLARE, ids.ALERT_DISMISS}


def button_cases() -> list[tuple[str, str]]:
    verbs = {action_id: sub.verb for sub in commands.REGISTRY.values() for action_id in sub.actions}
    return [
        (action_id, BUTTON_EXPECTED.get(action_id) or EXPECTED.get(verbs.get(action_id, ""), "unknown"))
        for action_id in commands.actions()
    ]


def with_statuspage(api_url: str, extra: str = "") -> str:
    return (
        default_config_text()
        + extra
        + f"statuspage: {{page_id: pg1, api_key_env: TEST_PERMISSIONS_SP_KEY, api_url: '{api_url}'}}\n"
    )


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[SandboxedBot, StatuspageSandbox]]:
    """One bot for the registry sweep: INC-1 (P2) declared by the commander, primary paged."""
    mp = pytest.MonkeyPatch()
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        mp.setenv("TEST_PERMISSIONS_SP_KEY", STATUSPAGE_KEY)
        with SandboxedBot(config_text=with_statuspage(page.api_url)) as running:
            running.command("declare p2 Search is slow", user=COMMANDER)
            running.slack.wait_for_dm("U0PRIMARY", "You are paged")
            yield running, page
            assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"
    mp.undo()


@pytest.fixture
def running() -> Iterator[SandboxedBot]:
    with SandboxedBot() as bot:
        bot.command("declare p2 Search is slow", user=COMMANDER)
        bot.slack.wait_for_dm("U0PRIMARY", "You are paged")
        yield bot
        assert not bot.slack.refusals(), f"Slack refused: {bot.slack.refusals()}"


def is_refusal(text: str) -> bool:
    return text.startswith("Only ") and " may " in text


def refusals_by(bot: SandboxedBot, user: str, incident: int | None = 1) -> list:
    return [r for r in bot.bot.store.refusals(incident) if r.actor == user]


@pytest.mark.parametrize(("verb", "args", "expected"), CASES, ids=[f"{v} {a}".strip() for v, a, _ in CASES])
def test_every_verb_as_an_outsider(world, verb, args, expected):
    running, _ = world
    if expected == "unknown":
        pytest.fail(f"/incident {verb} is new: say in EXPECTED (and in bot/permissions.py) who may use it")
    before = len(refusals_by(running, OUTSIDER))

    reply = running.command(f"{verb} INC-1 {args}".strip(), user=OUTSIDER)

    assert reply.status == 200
    after = refusals_by(running, OUTSIDER)
    if expected == "anyone":
        assert not is_refusal(reply.text), reply.text
        assert len(after) == before
    else:
        assert is_refusal(reply.text), reply.text
        assert "INC-1" in reply.text  # says who may, for this incident
        assert len(after) == before + 1
        assert after[-1].detail["tried"].startswith(f"/incident {verb} INC-1")


def test_the_sweep_covers_every_registered_button():
    assert {action_id for action_id, _ in button_cases()} == set(commands.actions())


@pytest.mark.parametrize(("action_id", "expected"), button_cases())
def test_every_button_as_an_outsider(world, action_id, expected):
    running, _ = world
    if expected == "unknown":
        pytest.fail(f"button {action_id} belongs to a verb with no expectation in EXPECTED")
    incident = None if action_id in NO_INCIDENT_BUTTONS else 1
    before = len(refusals_by(running, OUTSIDER, incident))

    click = running.click(action_id=action_id, value=BUTTON_VALUES.get(action_id, "1"), user=OUTSIDER)

    assert click.status == 200
    after = refusals_by(running, OUTSIDER, incident)
    if expected == "anyone":
        assert len(after) == before  # the check runs before the ack is sent
        assert not any(is_refusal(r.text) for r in click.responses(timeout=0.3))
    else:
        assert is_refusal(click.wait_response().text)
        assert len(after) == before + 1 and action_id in after[-1].detail["tried"]


@pytest.fixture(scope="module")
def responders_world() -> Iterator[SandboxedBot]:
    """INC-1 declared by the commander, with the CEO paged by hand: two responders, neither on call."""
    with SandboxedBot() as running:
        running.command("declare p2 Search is slow", user=COMMANDER)
        running.command("page INC-1 <@U0CEO|ceo>", user=COMMANDER)
        running.slack.wait_for_dm("U0CEO", "You are paged")
        yield running


RESPONDER_CASES = [(v, ARGS.get(v, ""), e) for v, _, e in CASES if e != "anyone"]
RESPONDER_CASES = [(v, "scribe <@U0LEAD|lead>" if v == "role" else a, e) for v, a, e in RESPONDER_CASES]


@pytest.mark.parametrize("who", ["U0CEO", COMMANDER], ids=["paged", "commander"])
@pytest.mark.parametrize(("verb", "args", "expected"), RESPONDER_CASES, ids=[f"{v} {a}" for v, a, _ in RESPONDER_CASES])
def test_every_restricted_verb_as_a_responder(responders_world, who, verb, args, expected):
    if expected == "unknown":
        pytest.fail(f"/incident {verb} is new: say in EXPECTED who may use it")
    if expected == "rollback.allowed" and who != COMMANDER:
        pytest.skip("rollback.allowed names the commander, not whoever was paged")
    reply = responders_world.command(f"{verb} INC-1 {args}".strip(), user=who)
    assert reply.status == 200 and not is_refusal(reply.text), reply.text
    assert refusals_by(responders_world, who) == []


def test_a_public_tick_in_the_update_form_is_refused_to_an_outsider(world):
    running, page = world
    running.click(action_id=ids.POST_UPDATE, value="1", user=OUTSIDER)
    view = running.slack.wait_for_view(ids.UPDATE_MODAL)
    creates = len(page.calls_to("create_incident"))
    version = running.bot.store.get(1).version

    ticked = running.platform.submit_view(
        view, {ids.UPDATE_TEXT_INPUT: "Going public", ids.PUBLIC_INPUT: ["yes"]}, user=OUTSIDER
    )

    assert ticked.response_action == "errors"
    error = ticked.body["errors"][ids.PUBLIC_BLOCK]
    assert is_refusal(error) and len(error) <= 150 and "`" not in error  # form errors are plain text
    assert running.bot.store.get(1).version == version
    assert refusals_by(running, OUTSIDER)[-1].detail["action"] == "update_public"
    plain = running.platform.submit_view(view, {ids.UPDATE_TEXT_INPUT: "Staying inside"}, user=OUTSIDER)
    assert plain.status == 200 and plain.response_action is None
    running.slack.wait_for(lambda: running.bot.store.get(1).version > version)
    assert len(page.calls_to("create_incident")) == creates


def test_a_public_declare_by_an_outsider_is_refused_with_no_incident_at_hand(world):
    running, _ = world
    count = running.bot.store.count_incidents()

    reply = running.command("declare p1 --public Payments down", user=OUTSIDER)
    running.command("declare", user=OUTSIDER)
    form = running.slack.wait_for_view(ids.DECLARE_MODAL)
    ticked = running.platform.submit_view(
        form, {ids.SEVERITY_INPUT: "P1", ids.TITLE_INPUT: "Payments down", ids.PUBLIC_INPUT: ["yes"]}, user=OUTSIDER
    )

    assert is_refusal(reply.text) and "status page" in reply.text
    assert ticked.response_action == "errors" and ids.PUBLIC_BLOCK in ticked.body["errors"]
    assert running.bot.store.count_incidents() == count
    refused = refusals_by(running, OUTSIDER, incident=None)
    assert [r.detail["tried"] for r in refused[-2:]] == [
        "/incident declare p1 --public Payments down",
        "the declare_modal form",
    ]


def test_the_paged_the_commander_and_the_on_call_may_act(running):
    refused = running.command("severity INC-1 p1", user="U0CEO")
    assert is_refusal(refused.text)

    running.command("page INC-1 <@U0CEO|ceo>", user=OUTSIDER)  # paging a person: anyone
    running.slack.wait_for_dm("U0CEO", "You are paged")
    assert running.command("severity INC-1 p1", user="U0CEO").text == "INC-1 is now P1 · Critical."
    assert running.command("severity INC-1 p2", user=COMMANDER).text == "INC-1 is now P2 · High."
    made = running.command(f"role INC-1 scribe <@{OUTSIDER}|bob>", user="U0PRIMARY")  # on call
    assert made.text == f"<@{OUTSIDER}> is now scribe of INC-1."
    assert running.command("page INC-1 oncall_secondary", user=OUTSIDER).text.startswith("Paging")  # now a scribe


def test_handing_over_command_takes_the_old_commanders_rights_with_it(running):
    running.command("role INC-1 commander <@U0LEAD|lead>", user=COMMANDER)

    reply = running.command("severity INC-1 p1", user=COMMANDER)

    assert is_refusal(reply.text)
    assert "INC-1's commander, scribe or comms" in reply.text and "`oncall_primary`" in reply.text


def test_a_refused_resolve_changes_nothing_and_is_audited(running):
    store = running.bot.store
    # Let the declare's own set-up finish first (war room briefed, pages sent): it writes too.
    room = running.slack.wait_for(lambda: store.get(1).war_room_briefed and store.get(1).war_room_id)
    running.slack.wait_for(lambda: store.delivery_backlog()[0] == 0, what="the declare's pages sent")
    before = store.get(1)
    timeline = store.timeline(1)
    posts = len(running.slack.messages_in(room))

    typed = running.command("resolve INC-1 All good", user=OUTSIDER)
    clicked = running.click(action_id=ids.RESOLVE, value="1", user=OUTSIDER)

    assert is_refusal(typed.text) and is_refusal(clicked.wait_response().text)
    after = running.bot.store.get(1)
    assert after.is_open and after.version == running.bot.store.get(1).version
    assert after.resolved_at is None and after.status == before.status
    assert running.bot.store.timeline(1) == timeline
    assert len(running.slack.messages_in(room)) == posts
    records = refusals_by(running, OUTSIDER)
    assert [(r.action, r.detail["action"]) for r in records] == [("refused", "resolve")] * 2
    assert records[0].detail["tried"] == "/incident resolve INC-1 All good"
    assert "incident_resolve" in records[1].detail["tried"]
    assert running.bot.timers.scheduler.job_for("incident-1") is not None  # its timers still run


def test_not_knowing_which_incident_is_said_before_any_refusal():
    with SandboxedBot() as bot:
        reply = bot.command("resolve", user=OUTSIDER)
        assert "There is no open incident" in reply.text
        assert bot.bot.store.refusals(None) == []


def test_the_resolve_button_asks_for_confirmation(running):
    channel = running.slack.wait_for(lambda: running.bot.store.get(1).announcement_channel)
    announcement = running.slack.wait_for_message(channel, "INC-1", with_button=ids.RESOLVE)

    element = next(e for b in announcement.blocks for e in b.get("elements", []) if e.get("action_id") == ids.RESOLVE)
    confirm = element["confirm"]  # Slack shows it before the click is sent; the sandbox checked its shape

    assert confirm["title"] == {"type": "plain_text", "text": "Resolve INC-1?"}
    assert confirm["confirm"]["text"] == "Resolve" and confirm["deny"]["text"] == "Cancel"
    assert confirm["style"] == "danger" and confirm["text"]["text"]
    running.click(announcement.button(ids.RESOLVE), user=COMMANDER, channel=channel)
    form = running.slack.wait_for_view("resolve_modal")  # confirmed: the resolve form opens
    running.platform.submit_view(form, {"resolve_summary": "Index rebuilt"}, user=COMMANDER)
    running.slack.wait_for(lambda: not running.bot.store.get(1).is_open, what="INC-1 resolved")


CUSTOM = """  resolve: [U0BOB]
  severity: [anyone]
  declare: [oncall_primary, tech_lead]
"""


def test_a_custom_permissions_entry_replaces_the_default():
    config = (
        default_config_text()
        .replace("  resolve: [responders]\n  reopen", "  reopen")
        .replace("  severity: [responders]\n", "")
        .replace("  declare: [anyone]\n", "")
        + CUSTOM
    )
    with SandboxedBot(config_text=config) as bot:
        assert bot.command("declare p2 Search is slow", user="U0PRIMARY").text.startswith("INC-1 declared")
        refused_declare = bot.command("declare p2 Something else", user=COMMANDER)
        assert is_refusal(refused_declare.text) and "`oncall_primary` or `tech_lead`" in refused_declare.text
        assert bot.bot.store.count_incidents() == 1
        assert bot.bot.store.refusals(None)[0].detail == {
            "action": "declare",
            "tried": "/incident declare p2 Something else",
        }

        assert bot.command("severity INC-1 p3", user="U0CEO").text == "INC-1 is now P3 · Medium."
        refused = bot.command("resolve INC-1", user="U0PRIMARY")  # the commander is no longer enough
        assert refused.text.startswith("Only <@U0BOB> may resolve INC-1.")
        assert bot.command("resolve INC-1 Done", user=OUTSIDER).text == "INC-1 resolved."


# -- the status page hears only what was asked for -----------------------------------------


@pytest.fixture
def public(monkeypatch) -> Iterator[tuple[SandboxedBot, StatuspageSandbox]]:
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        monkeypatch.setenv("TEST_PERMISSIONS_SP_KEY", STATUSPAGE_KEY)
        with SandboxedBot(config_text=with_statuspage(page.api_url)) as running:
            yield running, page


def everything_sent(page: StatuspageSandbox) -> str:
    return json.dumps([call.body for call in page.calls])


def test_a_declare_and_resolve_summary_stay_off_the_status_page_unless_asked(public):
    running, page = public
    running.command("declare p2 Customer DB password in logs", user=COMMANDER)
    created = running.slack.wait_for(lambda: page.calls_to("create_incident"))
    running.slack.wait_for(lambda: running.bot.store.get(1).statuspage_id)

    running.command("resolve INC-1 Rotated the leaked password", user=COMMANDER)

    resolved = running.slack.wait_for(lambda: page.calls_to("update_incident"))
    assert created[0].body["incident"]["name"] == "Investigating an issue"
    assert resolved[0].body["incident"] == {"status": "resolved", "body": "This incident has been resolved."}
    sent = everything_sent(page)
    assert "password" not in sent and "Customer" not in sent


def test_declare_and_resolve_with_public_say_it_on_the_status_page(public):
    running, page = public
    reply = running.command("declare p2 --public Checkout is slow", user="U0PRIMARY")  # on call: may go public
    assert reply.text.startswith("INC-1 declared")
    created = running.slack.wait_for(lambda: page.calls_to("create_incident"))
    running.slack.wait_for(lambda: running.bot.store.get(1).statuspage_id)
    assert running.bot.store.get(1).title == "Checkout is slow"

    running.command("resolve INC-1 --public Checkout is fast again", user="U0PRIMARY")

    resolved = running.slack.wait_for(lambda: page.calls_to("update_incident"))
    assert created[0].body["incident"]["name"] == "Checkout is slow"
    assert created[0].body["incident"]["body"] == "We are investigating: Checkout is slow"
    assert resolved[0].body["incident"]["body"] == "Checkout is fast again"


def test_the_declare_forms_tick_puts_the_title_on_the_status_page(public):
    running, page = public
    running.command("declare", user="U0PRIMARY")
    form = running.slack.wait_for_view(ids.DECLARE_MODAL)
    assert any(b.get("block_id") == ids.PUBLIC_BLOCK for b in form["blocks"])

    done = running.platform.submit_view(
        form, {ids.SEVERITY_INPUT: "P3", ids.TITLE_INPUT: "Export is broken", ids.PUBLIC_INPUT: ["yes"]}
    )

    assert done.response_action is None
    created = running.slack.wait_for(lambda: page.calls_to("create_incident"))  # P3: only because ticked
    assert created[0].body["incident"]["name"] == "Export is broken"


def test_a_public_update_on_a_quiet_incident_opens_it_without_the_title(public):
    running, page = public
    running.command("declare p3 Internal admin CSV export broken", user=COMMANDER)
    running.slack.wait_for_dm("U0SUPPORT", "You are paged")

    running.command("update INC-1 --public monitoring A fix is deployed", user=COMMANDER)

    running.slack.wait_for(lambda: page.calls_to("update_incident"))
    assert "admin" not in everything_sent(page)
    assert page.calls_to("update_incident")[0].body["incident"]["body"] == "A fix is deployed"


def test_resolve_public_without_a_status_page_is_refused_and_changes_nothing(running):
    reply = running.command("resolve INC-1 --public Fixed", user=COMMANDER)
    assert "No status page is configured" in reply.text
    assert running.bot.store.get(1).is_open


@pytest.mark.parametrize("flag", ["--public:", "--PUBLIC", "--public\tidentified"])
def test_whatever_the_handler_reads_as_public_the_gate_checks_too(world, flag):
    """The flag is read in one place (grammar.public_flag): the check and the command agree."""
    running, page = world
    before = len(page.calls)
    reply = running.command(f"update INC-1 {flag} we got hacked", user=OUTSIDER)
    if is_refusal(reply.text):
        assert refusals_by(running, OUTSIDER)[-1].detail["action"] == "update_public"
    else:  # not read as the flag at all: an ordinary update, with the word in its text
        assert "status page" not in reply.text
    time.sleep(0.5)
    assert len(page.calls) == before, "nothing reached the status page"


def test_the_resolve_forms_status_page_tick_needs_update_public(monkeypatch):
    with StatuspageSandbox(page_id="pg1", api_key=STATUSPAGE_KEY) as page:
        monkeypatch.setenv("TEST_PERMISSIONS_SP_KEY", STATUSPAGE_KEY)
        config = with_statuspage(page.api_url).replace("  update_public: [responders]\n", "  update_public: [U0LEAD]\n")
        assert "update_public: [U0LEAD]" in config
        with SandboxedBot(config_text=config) as running:
            running.command("declare p2 Search is slow", user=COMMANDER)
            running.slack.wait_for(lambda: running.bot.store.get(1).announcement_ts)
            running.click(action_id=ids.RESOLVE, value="1", user=COMMANDER)
            view = running.slack.wait_for_view(ids.RESOLVE_MODAL)
            ticked = running.platform.submit_view(
                view,
                {ids.RESOLVE_SUMMARY_BLOCK: "SECRET internal summary", ids.RESOLVE_PUBLIC_BLOCK: ["yes"]},
                user=COMMANDER,
            )
            assert ticked.response_action == "errors" and ids.RESOLVE_PUBLIC_BLOCK in ticked.body["errors"]
            assert running.bot.store.get(1).is_open
            assert "SECRET" not in everything_sent(page)
            assert refusals_by(running, COMMANDER)[-1].detail["action"] == "update_public"


def test_an_override_typed_in_capitals_is_checked_like_one_in_lower_case():
    config = default_config_text().replace(
        "  oncall_override: [responders, schedule_members]\n", "  oncall_override: [U0LEAD]\n"
    )
    assert "oncall_override: [U0LEAD]" in config
    with SandboxedBot(config_text=config) as running:
        reply = running.command("oncall OVERRIDE primary <@U0BOB> 4h", user=OUTSIDER)
        assert is_refusal(reply.text), reply.text
        assert refusals_by(running, OUTSIDER, None)[-1].detail["action"] == "oncall_override"
