"""End to end: the timeline, the resolve form, the post-mortem draft, reopen, stats, over real HTTP."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core import text
from bot.core.durations import humanize
from bot.domain.timeline import plain, ts_time, utc
from bot.sandbox.runner import SIGNING_SECRET, SandboxedBot
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from tests.conftest import FAST_CONFIG
from tests.restarts.test_restart import BotProcess

ROOT = Path(__file__).resolve().parents[2]
ANNOUNCE = "C0INCIDENT"

# Update reminders every 3 s, so "no timer after resolve" and "reopen re-plans" show in seconds.
REVIEW_CONFIG = FAST_CONFIG.replace(
    "update_every: 60s\n    notify: [vp_product, tech_lead]", "update_every: 3s\n    notify: [vp_product, tech_lead]"
)
assert REVIEW_CONFIG != FAST_CONFIG


@pytest.fixture
def review_bot() -> Iterator[SandboxedBot]:
    with SandboxedBot(config_text=REVIEW_CONFIG, preset="bad_deploy") as running:
        yield running
        assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"
        assert not running.slack.errors, running.slack.errors


def declare(world: SandboxedBot, title: str = "Checkout returns 500") -> str:
    """Declare a P1 and return its war room's id, once the room is briefed."""
    world.command(f"declare p1 {title}", user="U0ALICE")
    store = world.bot.store  # type: ignore[union-attr]
    room: str = world.slack.wait_for(lambda: (i := store.get(1)) and i.war_room_id or "")
    world.slack.wait_for_message(room, "first steps")
    return room


def table_rows(markdown: str) -> list[list[str]]:
    section = markdown.split("## Timeline", 1)[1].split("## Impact", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| 20")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def cli(*args: str, db: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "INCIDENT_BOT_DB": db, "PYTHONPATH": str(ROOT)}
    env.pop("INCIDENT_BOT_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, timeout=30, cwd=ROOT)


def test_a_scripted_incident_ends_in_a_post_mortem_listing_each_event_once(review_bot):
    world, slack = review_bot, review_bot.slack
    store = world.bot.store
    room = declare(world)
    world.command("ack", user="U0PRIMARY", channel=room)
    world.command("update identified Bad deploy 00043", user="U0PRIMARY", channel=room)
    assert world.command("note Rolling back to 00042", user="U0PRIMARY", channel=room).text == (
        "Noted in INC-1's timeline."
    )
    said = slack.post_as("U0BOB", room, "Error rate is dropping <!channel>")
    assert world.platform.react("U0ALICE", room, said.ts).status == 200
    slack.wait_for(lambda: [e for e in store.timeline(1) if e.kind == "pin"], what="the pinned message")
    world.command("diagnose", user="U0PRIMARY", channel=room)
    slack.wait_for(lambda: [e for e in store.timeline(1) if e.kind == "diagnose"], timeout=20, what="diagnose")

    # The announcement's Resolve button opens the form; submitting it resolves.
    announcement = slack.wait_for_message(ANNOUNCE, "INC-1 ·", with_button="incident_resolve")
    world.click(announcement.button("incident_resolve"), user="U0PRIMARY")
    view = slack.wait_for_view("resolve_modal")
    submitted = world.platform.submit_view(
        view,
        {
            "resolve_summary": "Rolled back to 00042; error rate under 1%",
            "root_cause": "Deploy 00043 read a config key that does not exist",
            "customer_impact": "All checkouts failed",
        },
        user="U0PRIMARY",
    )
    assert submitted.status == 200 and submitted.response_action is None  # the modal closes

    # The all-clear in the runbook's shape, in the war room and under the announcement.
    all_clear = slack.wait_for_message(room, "All clear")
    incident = store.get(1)
    assert incident is not None and incident.resolved_at and incident.acknowledged_at
    for expected in (
        "Rolled back to 00042; error rate under 1%",
        f"{humanize(incident.resolved_at - incident.declared_at)} from declaration to resolution",
        f"*Time to acknowledge*\n{humanize(incident.acknowledged_at - incident.declared_at)}",
        "*Customer impact:* All checkouts failed",
    ):
        assert expected in all_clear.all_text
    slack.wait_for(lambda: [m for m in slack.thread(ANNOUNCE, announcement.ts) if "All clear" in m.all_text])

    # The draft reaches the war room through the three calls of files_upload_v2 (Slack shows it
    # in the channel a moment after it answers the last one).
    [upload] = slack.wait_for(lambda: slack.shared_files(), what="the post-mortem upload shared")
    steps = [
        c.method
        for c in slack.calls
        if c.method in {"files.getUploadURLExternal", "upload", "files.completeUploadExternal"}
    ]
    assert steps == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]
    assert all(c.ok for c in slack.calls if c.method in steps)
    assert upload.channels == (room,) and upload.name == "INC-1-postmortem.md"
    shared = slack.wait_for_message(room, "Post-mortem draft for *INC-1*")
    assert shared.files and shared.files[0]["id"] == upload.id

    # Its timeline: every event once, in order, with the time since the declaration.
    assert upload.content is not None
    markdown = upload.content.decode("utf-8")
    events = store.timeline(1)
    kinds = [e.kind for e in events]
    for kind in ("declare", "ack", "update", "note", "pin", "diagnose", "resolve"):
        assert kinds.count(kind) == 1, kinds
    rows = table_rows(markdown)
    # People are named as Slack shows them (issue 21), every other character as recorded.
    names = {u.id: u.name for u in slack.users()}

    def named(line: str) -> str:
        return re.sub(r"@(U[A-Z0-9]+)\b", lambda m: f"@{names.get(m.group(1), m.group(1))}", line)

    assert [row[3] for row in rows] == [named(" ".join(plain(e.text).split()).replace("|", "\\|")) for e in events]
    assert "@U0" not in markdown
    assert [row[1] for row in rows] == [f"+{humanize(e.at - incident.declared_at)}" for e in events]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    pin_row = next(row for row in rows if "Error rate is dropping" in row[3])
    assert pin_row[0] == utc(ts_time(said.ts)) and "@channel" in pin_row[3] and "<!channel>" not in pin_row[3]
    assert "Deploy 00043 read a config key that does not exist" in markdown.split("## Root Cause")[1]
    assert "- **Customers Affected**: All checkouts failed" in markdown

    # Stored, and printed by the CLI byte for byte.
    draft = slack.wait_for(lambda: (d := store.draft(1)) and d.file_id and d, what="the upload recorded")
    assert draft.markdown == markdown and draft.file_id == upload.id
    printed = cli("postmortem", "INC-1", db=world.db_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == upload.content


def test_no_timer_fires_after_resolve_and_reopen_replans_them_from_the_reopening(review_bot):
    world, slack = review_bot, review_bot.slack
    room = declare(world)
    world.command("ack", user="U0PRIMARY", channel=room)
    assert world.command("resolve INC-1 Rolled back", user="U0PRIMARY", channel=room).text == "INC-1 resolved."
    slack.wait_for_message(room, "All clear")
    nags = [m.ts for m in slack.messages_in(room) if "has had no update" in m.all_text]

    time.sleep(3.5)  # past the 3 s update cadence: a live timer would have nagged by now
    assert [m.ts for m in slack.messages_in(room) if "has had no update" in m.all_text] == nags
    # What is left is the post-mortem reminder, a day after the resolution.
    resolved = world.bot.store.get(1)
    assert world.bot.timers.scheduler.job_for("incident-1") is None
    job = world.bot.timers.scheduler.job_for("postmortem-1")
    assert resolved is not None and resolved.resolved_at is not None
    assert job is not None and job.next_run_time >= resolved.resolved_at + timedelta(hours=24)

    reopened_at = time.monotonic()
    reply = world.command("reopen INC-1 Errors are back", user="U0PRIMARY", channel=room)
    assert reply.text == "INC-1 reopened."
    slack.wait_for_message(room, "reopened INC-1: Errors are back")
    slack.wait_for_message(ANNOUNCE, "INC-1 ·", with_button="incident_resolve")  # edited back to open
    reminder = slack.wait_for_message(room, "has had no update")
    assert world.bot.timers.scheduler.job_for("postmortem-1") is None, "a reopen drops the post-mortem reminder"
    assert reminder.ts not in nags
    assert time.monotonic() - reopened_at >= 2.8, "the cadence counts from the reopening"
    assert "reopen" in [e.kind for e in world.bot.store.timeline(1)]


def test_a_retried_reaction_adds_one_timeline_entry(review_bot):
    world, slack = review_bot, review_bot.slack
    room = declare(world)
    said = slack.post_as("U0BOB", room, "Memory at 98% on every instance")
    first = world.platform.react("U0ALICE", room, said.ts, event_id="Ev0PIN")
    retry = world.platform.react("U0ALICE", room, said.ts, event_id="Ev0PIN", retry_num=1)
    again = world.platform.react("U0LEAD", room, said.ts)  # someone else pins it too
    assert (first.status, retry.status, again.status) == (200, 200, 200)
    assert max(first.elapsed, retry.elapsed, again.elapsed) < 3.0
    reads = lambda: [c for c in slack.calls_to("conversations.history") if c.params.get("channel") == room]  # noqa: E731
    # Issue 21: the retry (same event_id) is answered 200 and not handled again; the other pin is.
    slack.wait_for(lambda: len(reads()) >= 2, what="each distinct event handled")
    time.sleep(0.3)
    assert len(reads()) == 2, "the retried event was handled again"
    pins = [e for e in world.bot.store.timeline(1) if e.kind == "pin"]
    assert len(pins) == 1
    assert pins[0].actor == "U0BOB" and pins[0].at == ts_time(said.ts)
    assert "Memory at 98% on every instance" in pins[0].text


def test_pins_that_are_not_timeline_material_are_ignored(review_bot):
    world, slack = review_bot, review_bot.slack
    room = declare(world)
    gone = slack.post_as("U0BOB", room, "oops, wrong channel")
    slack.delete_message(room, gone.ts)
    world.platform.react("U0ALICE", room, gone.ts)
    elsewhere = slack.post_as("U0BOB", ANNOUNCE, "Is checkout down?")
    world.platform.react("U0ALICE", ANNOUNCE, elsewhere.ts)  # not a war room
    kept = slack.post_as("U0BOB", room, "thanks")
    world.platform.react("U0ALICE", room, kept.ts, reaction="tada")  # not a pin
    slack.wait_for(lambda: slack.calls_to("conversations.replies"), what="the deleted message looked up")
    time.sleep(0.3)
    assert [e for e in world.bot.store.timeline(1) if e.kind == "pin"] == []
    assert not [c for c in slack.calls_to("conversations.history") if c.params.get("channel") == ANNOUNCE]


def test_bad_input_gets_a_clear_answer_and_changes_nothing(review_bot):
    world, slack = review_bot, review_bot.slack
    store = world.bot.store
    room = declare(world)
    before = len(store.timeline(1))

    huge = world.command("note " + "x" * 50_000, user="U0PRIMARY", channel=room)
    assert huge.status == 200 and "limited" in huge.text
    long = world.command("note " + "y" * 3000, user="U0PRIMARY", channel=room)
    assert "Notes are limited to 2,900 characters" in long.text and "Usage:" in long.text
    assert "What should the timeline say?" in world.command("note", user="U0PRIMARY", channel=room).text
    assert len(store.timeline(1)) == before

    trick = world.command("followup <!channel> rotate keys <@U0CEO> <https://evil.example|docs>", channel=room)
    assert "<!channel>" not in trick.text and "&lt;!channel&gt;" in trick.text
    line = store.timeline(1)[-1]
    # Nothing typed is live: no broadcast, no mention, no link with a label that hides where it goes.
    # (The URL itself is one Slack recognised, so it may stay a plain link to itself.)
    assert line.kind == "followup" and "<!channel>" not in line.text and "<@U0CEO>" not in line.text
    assert "|docs>" not in line.text
    [followup] = store.followups(1)
    # Stored as typed (the URL Slack recognised kept as its entity), plain for the file.
    assert text.plain(followup.text) == "<!channel> rotate keys <@U0CEO> <https://evil.example|docs>"

    window = world.command("stats 9999d")
    assert "1 to 365 days" in window.text and "Usage: `/incident stats" in window.text
    still_open = world.command("reopen INC-1", channel=room)
    assert "still open" in still_open.text
    unknown = world.command("postmortem INC-99")
    assert "INC-99 does not exist" in unknown.text
    assert cli("postmortem", "INC-99", db=world.db_path).returncode == 1
    assert store.draft(99) is None and not slack.uploaded_files()


def test_postmortem_rewrites_and_reuploads_the_draft_and_stats_agree_with_the_cli(review_bot):
    world, slack = review_bot, review_bot.slack
    room = declare(world)
    world.command("ack", user="U0PRIMARY", channel=room)
    world.command("resolve Rolled back", user="U0PRIMARY", channel=room)
    slack.wait_for(lambda: slack.uploaded_files(), what="the first draft")
    world.command("followup Add a canary stage - @lead by Friday", user="U0LEAD", channel=room)
    reply = world.command("postmortem", user="U0ALICE", channel=room)
    assert "Writing INC-1's post-mortem draft" in reply.text
    second = slack.wait_for(lambda: slack.uploaded_files()[1:], what="the second draft")[0]
    assert second.content is not None
    # Issue 21: people are named as Slack shows them (users.info at draft time), not by user ID:
    # the file is read in a doc or a wiki, where U0LEAD means nothing.
    assert "- [ ] Add a canary stage - @lead by Friday - added by @lead" in second.content.decode()
    assert "@U0LEAD" not in second.content.decode() and "@U0PRIMARY" not in second.content.decode()
    assert "- @primary - " in second.content.decode()
    assert cli("postmortem", "inc-1", db=world.db_path).stdout == second.content

    shown = world.command("stats 7d")
    assert shown.text.startswith("Last 7 days: 1 incident, ")
    assert "P1: 1 · MTTA median" in shown.text
    printed = cli("stats", "7d", db=world.db_path)
    assert printed.returncode == 0, printed.stderr
    # The CLI reads the built-in config (P1 acks within 5m), the bot its 3 s one: compare the timings.
    assert printed.stdout.decode().splitlines()[1].split(" · ")[:3] == shown.text.splitlines()[1].split(" · ")[:3]
    timeline = world.command("timeline", channel=room)
    headers = [b["text"]["text"].split("\n", 1)[0] for b in timeline.blocks if b["type"] == "section"]
    assert headers[0] == "*Detected*" and "*Resolved*" in headers
    assert re.search(r"`20\d\d-\d\d-\d\d \d\d:\d\d:\d\d`", timeline.blocks[1]["text"]["text"])


# -- restart ----------------------------------------------------------------------------------

# Due 5 s after the resolution: time enough to see the draft uploaded and kill the bot first.
REMINDER_AFTER_RESTART = REVIEW_CONFIG + "postmortem: {severities: [P1, P2], due_after: 5s}\n"


def _draft_recorded(db_path: str) -> bool:
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)) as db:
        row = db.execute("SELECT permalink FROM postmortems WHERE incident = 1").fetchone()
    return bool(row and row[0])


def test_the_post_mortem_reminder_fires_once_across_a_restart_that_straddles_it(tmp_path: Path):
    with SlackSandbox() as slack:
        bot = BotProcess(tmp_path, slack)
        Path(bot.env["INCIDENT_BOT_CONFIG"]).write_text(REMINDER_AFTER_RESTART, encoding="utf-8")
        try:
            bot.start()
            platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
            platform.command("declare p1 Checkout down", user="U0ALICE")
            room = slack.wait_for(lambda: slack.channel_by_name("inc-1-checkout-down"))
            platform.command("ack", user="U0PRIMARY", channel=room.id)
            platform.command("resolve Rolled back", user="U0ALICE", channel=room.id)
            resolved = time.monotonic()
            slack.wait_for(lambda: slack.uploaded_files(), timeout=10, what="the draft")
            # Killed once the bot has recorded the upload (a kill between the upload and that record
            # is the crash suite's business: the draft may then be uploaded again).
            slack.wait_for(lambda: _draft_recorded(bot.env["INCIDENT_BOT_DB"]), timeout=10, what="the draft recorded")
            bot.kill()  # the reminder is due 5 s after the resolution
            assert time.monotonic() - resolved < 5, "the bot must die before the reminder is due"
            assert not [m for m in slack.dms_to("U0ALICE") if "post-mortem of *INC-1*" in m.text]
            time.sleep(max(0.0, 5.3 - (time.monotonic() - resolved)))

            bot.start()
            reminder = slack.wait_for_dm("U0ALICE", "post-mortem of *INC-1*")
            assert "https://sandbox.slack.com/files/" in reminder.text  # the draft's permalink
            bot.kill()
            bot.start()
            time.sleep(1.0)
            reminders = [m for m in slack.dms_to("U0ALICE") if "post-mortem of *INC-1*" in m.text]
            assert len(reminders) == 1
            assert len(slack.uploaded_files()) == 1, "the draft is uploaded once"
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()


def test_the_demo_ends_with_the_all_clear_the_post_mortem_draft_and_the_stats_line():
    import io

    from bot.sandbox.demo import run_demo

    out = io.StringIO()
    assert run_demo(out=out) == 0, out.getvalue()[-3000:]
    text = out.getvalue()
    assert "✅ All clear: INC-1 resolved" in text
    draft = text.split("The post-mortem draft (INC-1-postmortem.md", 1)[1]
    assert "# Incident Post-Mortem: tai-autonomics" in draft and "| 20" in draft
    assert draft.split("Stats\n", 1)[1].split("═" * 100)[1].strip().startswith("Last 30 days: 2 incidents")


def test_the_events_url_answers_slacks_url_verification(review_bot):
    import json

    challenge = {
        "token": "sandbox-verification-token",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595",
        "type": "url_verification",
    }
    answer = review_bot.platform.send(json.dumps(challenge), content_type="application/json")
    assert answer.status == 200 and answer.body == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595"}


@pytest.mark.parametrize(
    ("ticked", "public_text"),
    [(["yes"], "Rolled back to 00042"), ([], "This incident has been resolved.")],
)
def test_the_resolve_form_says_on_the_status_page_what_was_ticked(monkeypatch, ticked, public_text):
    from bot.sandbox.statuspage import StatuspageSandbox

    with StatuspageSandbox(page_id="pg1", api_key="sp-review-key") as page:
        monkeypatch.setenv("TEST_STATUSPAGE_KEY", "sp-review-key")
        config = REVIEW_CONFIG + (
            f"statuspage: {{page_id: pg1, api_key_env: TEST_STATUSPAGE_KEY, api_url: '{page.api_url}'}}\n"
        )
        with SandboxedBot(config_text=config) as running:
            room = declare(running)
            running.slack.wait_for(lambda: running.bot.store.get(1).statuspage_id)
            announcement = running.slack.wait_for_message(ANNOUNCE, "INC-1 ·", with_button="incident_resolve")
            running.click(announcement.button("incident_resolve"), user="U0PRIMARY")
            view = running.slack.wait_for_view("resolve_modal")
            tick = next(b for b in view["blocks"] if b["block_id"] == "resolve_public")
            assert (
                "initial_options" not in tick["element"]
            )  # empty even when public: the summary goes out only if ticked
            running.platform.submit_view(
                view, {"resolve_summary": "Rolled back to 00042", "resolve_public": ticked}, user="U0PRIMARY"
            )
            running.slack.wait_for_message(room, "All clear")
            [resolved] = running.slack.wait_for(lambda: page.calls_to("update_incident"))
            assert resolved.body["incident"] == {"status": "resolved", "body": public_text}
            assert not running.slack.refusals()


def test_a_pinned_thread_reply_is_captured_too(review_bot):
    world, slack = review_bot, review_bot.slack
    room = declare(world)
    parent = slack.post_as("U0BOB", room, "Looking at the 5xx graph")
    reply = slack.post_as("U0LEAD", room, "It started at 14:02, with revision 00043", thread_ts=parent.ts)
    world.platform.react("U0ALICE", room, reply.ts)
    pins = slack.wait_for(lambda: [e for e in world.bot.store.timeline(1) if e.kind == "pin"], what="the pin")
    assert len(pins) == 1 and pins[0].actor == "U0LEAD" and "revision 00043" in pins[0].text
    assert pins[0].at == ts_time(reply.ts)


def test_limits_count_what_was_typed_and_a_note_at_its_limit_is_kept_whole(fast_bot):
    fast_bot.slack.add_user("U0CEO", "carl", "Carl", "ceo@example.com")
    fast_bot.command("declare p3 Export button broken")
    # 2,900 typed characters of `&` are 14,500 of mrkdwn: accepted, and stored whole.
    assert fast_bot.command("note INC-1 " + "&" * 2900).text == "Noted in INC-1's timeline."
    [note] = [e for e in fast_bot.bot.store.timeline(1) if e.kind == "note"]
    assert note.text.count("&amp;") == 2900
    # A mention counts as the name typed (@carl), not as Slack's <@U0CEO|carl>.
    assert "recorded" in fast_bot.command("followup INC-1 " + "x" * 494 + " @carl").text
    too_long = fast_bot.command("followup INC-1 " + "x" * 501).text
    assert "Follow-ups are limited to 500 characters; yours has 501." in too_long
