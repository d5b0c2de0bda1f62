"""Block Kit builders: pure functions from domain state to message and modal payloads.

Every piece of user text goes through `text.for_slack` (`mrkdwn.user_text`), which keeps the
mentions and links Slack recognised live, escapes the rest and cuts it to the block's limit, so
no title or update can break a message or ping a channel.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from bot.core.durations import humanize
from bot.core.mrkdwn import user_text
from bot.core.text import for_slack, plain
from bot.domain import pagerduty
from bot.domain.escalation import missed_at_declare
from bot.domain.incidents import STATUSES, TITLE_MAX, Incident, sla_text
from bot.domain.policy import Config
from bot.slack import ids

Block = dict[str, Any]

SECTION_MAX = 3000
FIELD_MAX = 2000
HEADER_MAX = 150
MESSAGE_BLOCKS_MAX = 50
SEVERITY_MARK = {"P1": "🔴", "P2": "🟠", "P3": "🟡", "P4": "⚪"}


def _text(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": text}


def section(text: str) -> Block:
    return {"type": "section", "text": _text("mrkdwn", text[:SECTION_MAX])}


def header(text: str) -> Block:
    return {"type": "header", "text": _text("plain_text", text[:HEADER_MAX])}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [_text("mrkdwn", t[:SECTION_MAX]) for t in texts[:10]]}


def button(
    label: str, action_id: str, value: str, style: str | None = None, confirm: dict[str, Any] | None = None
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": _text("plain_text", label[:75]),
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def confirm_dialog(title: str, text: str, confirm: str, deny: str = "Cancel", style: str = "danger") -> dict[str, Any]:
    """Slack's "are you sure?" dialog on a button (title 100, text 300, buttons 30 characters)."""
    return {
        "title": _text("plain_text", title[:100]),
        "text": _text("plain_text", text[:300]),
        "confirm": _text("plain_text", confirm[:30]),
        "deny": _text("plain_text", deny[:30]),
        "style": style,
    }


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """A timestamp every reader sees in their own time zone, with a UTC fallback."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>"


def severity_label(config: Config, severity: str) -> str:
    return f"{severity} · {config.policy(severity).label}"


def fallback_text(config: Config, incident: Incident) -> str:
    """The notification text: what a phone shows, and what screen readers read."""
    state = "resolved" if not incident.is_open else incident.status
    return f"{incident.ref} ({severity_label(config, incident.severity)}, {state}): {for_slack(incident.title)}"


def announcement(config: Config, incident: Incident, now: datetime) -> list[Block]:
    """The one message per incident in the announcement channel, edited in place as it changes."""
    mark = "✅" if not incident.is_open else SEVERITY_MARK.get(incident.severity, "")
    title = f"{mark} {incident.ref} · {severity_label(config, incident.severity)}"
    if not incident.is_open:
        title += " · resolved"
    fields = [
        f"*Status*\n{incident.status.capitalize()}",
        f"*Commander*\n<@{incident.commander}>",
        f"*Declared*\n{slack_date(incident.declared_at)} by <@{incident.declared_by}>",
        f"*Acknowledged*\n{_ack_text(config, incident)}",
        f"*War room*\n<#{incident.war_room_id}>" if incident.war_room_id else "*War room*\n—",
        f"*Last update*\n{slack_date(incident.last_update_at) if incident.last_update_at else 'none yet'}",
    ]
    if incident.detected_at:
        fields.insert(3, f"*Detected*\n{slack_date(incident.detected_at)}, when the alert fired")
    if incident.resolved_at:
        duration = humanize(incident.resolved_at - incident.detected)
        fields.append(f"*Resolved*\n{slack_date(incident.resolved_at)} after {duration}")
    blocks: list[Block] = [
        header(title),
        section(f"*{user_text(incident.title, TITLE_MAX * 6)}*"),
        {"type": "section", "fields": [_text("mrkdwn", f[:FIELD_MAX]) for f in fields]},
    ]
    if incident.summary:
        blocks.append(section(f"*Summary:* {user_text(incident.summary, SECTION_MAX - 20)}"))
    if incident.is_open:
        blocks.append(context(_description(config, incident) + f"SLA: {sla_text(config, incident.severity)}"))
        policy = config.policy(incident.severity)
        late = missed_at_declare(incident, policy)
        if late is not None and policy.ack_within:
            blocks.append(
                context(
                    f"Declared {humanize(late)} after the alert fired: the {humanize(policy.ack_within)} "
                    "ack target was already missed."
                )
            )
        blocks.append(
            {
                "type": "actions",
                "block_id": "incident_actions",
                "elements": announcement_buttons(incident),
            }
        )
    return blocks


def _description(config: Config, incident: Incident) -> str:
    description = config.policy(incident.severity).description
    return f"{description}. " if description else ""


def announcement_buttons(incident: Incident) -> list[dict[str, Any]]:
    value = str(incident.number)
    buttons = []
    if incident.acknowledged_at is None:
        buttons.append(button("Acknowledge", ids.ACK, value, style="primary"))
    buttons += [
        button("Post update", ids.POST_UPDATE, value),
        button("Diagnose", ids.DIAGNOSE, value),
        button(
            "Resolve",
            ids.RESOLVE,
            value,
            style="danger",
            confirm=confirm_dialog(
                f"Resolve {incident.ref}?",
                "This posts the all-clear, stops every reminder and escalation, and closes the pages.",
                "Resolve",
            ),
        ),
    ]
    return buttons


def _ack_text(config: Config, incident: Incident) -> str:
    if incident.acknowledged_at and incident.acknowledged_by:
        return f"{pagerduty.person(incident.acknowledged_by)} {slack_date(incident.acknowledged_at, '{time}')}"
    ack_within = config.policy(incident.severity).ack_within
    return f"not yet (due within {humanize(ack_within)})" if ack_within else "not yet"


def first_steps(config: Config, incident: Incident) -> list[Block]:
    """The runbook's universal response flow, with this severity's numbers filled in."""
    policy = config.policy(incident.severity)
    ack = humanize(policy.ack_within) if policy.ack_within else "soon"
    fix = f" within {humanize(policy.fix_within)}" if policy.fix_within else ""
    every = humanize(policy.update_every) if policy.update_every else "each milestone"
    gather = {
        "P1": "Page the incident commander, VP Product and tech lead (the bot pages along the escalation path).",
        "P2": "Keep VP Product informed (the bot has notified them).",
    }.get(incident.severity, "This can be handled solo; pull people in with `/incident page`.")
    steps = [
        f"*1. Acknowledge* within {ack}: press *Acknowledge* or type `/incident ack`.",
        "*2. Assess*: is it real? Confirm severity (`/incident severity p2` to change it), estimate customers and revenue affected.",
        f"*3. Gather the team*: {gather}",
        f"*4. Communicate* every {every}: `/incident update <what we know>`. No news is bad news.",
        f"*5. Investigate & fix*{fix}: `/incident diagnose` checks Cloud Run, recent errors and the health endpoint; `/incident runbook` lists the scenarios.",
        "*6. Verify*: error rate back under 1%, health 200, a real API call succeeds, watch 5 minutes.",
        "*7. Resolve*: `/incident resolve <summary>` marks it resolved, stops every timer and edits the announcement.",
    ]
    return [
        header(f"{incident.ref} war room · first steps"),
        section(
            f"*{user_text(incident.title, 500)}*\nDeclared by <@{incident.declared_by}>, commander <@{incident.commander}>."
        ),
        section("\n".join(steps)),
    ]


def war_room_topic(config: Config, incident: Incident) -> str:
    # Topics are plain text of at most 250 characters; angle brackets become look-alikes so
    # no `<!channel>` in a title can ever be read as a mention, whatever the client does.
    title = plain(incident.title).replace("<", "‹").replace(">", "›")
    topic = f"{incident.ref} {incident.severity} {config.policy(incident.severity).label}: {title}"
    return topic if len(topic) <= 250 else topic[:249] + "…"


def incident_list(
    config: Config, incidents: list[Incident], now: datetime, counts: dict[str, int] | None = None
) -> list[Block]:
    """The open incidents shown; `counts` (open per severity) says how many more there are."""
    if not incidents:
        return [section("No open incidents. :white_check_mark:")]
    lines = []
    for inc in incidents:
        since_update = (
            f"last update {humanize(now - inc.last_update_at)} ago" if inc.last_update_at else "no update yet"
        )
        ack = "" if inc.acknowledged_at else " · *not acknowledged*"
        room = f" · <#{inc.war_room_id}>" if inc.war_room_id else ""
        lines.append(
            f"{SEVERITY_MARK.get(inc.severity, '')} *{inc.ref}* {inc.severity} · {user_text(inc.title, 200)}\n"
            f"      open {humanize(now - inc.declared_at)} · commander <@{inc.commander}> · {since_update}{ack}{room}"
        )
    total = sum(counts.values()) if counts else len(incidents)
    blocks = [header(f"{total} open incident{'s' if total != 1 else ''}")]
    blocks += [section(chunk) for chunk in chunks(lines, SECTION_MAX)]
    if counts and total > len(incidents):
        shown = Counter(inc.severity for inc in incidents)
        order = [*config.severities, *sorted(set(counts) - set(config.severities))]
        not_shown = {sev: counts.get(sev, 0) - shown[sev] for sev in order}
        rest = ", ".join(f"{n} {sev}" for sev, n in not_shown.items() if n > 0)
        blocks.append(context(f"…and {total - len(incidents)} more ({rest}), not shown: the most severe come first."))
    if len(blocks) > MESSAGE_BLOCKS_MAX:
        hidden = len(blocks) - MESSAGE_BLOCKS_MAX + 1
        blocks = blocks[: MESSAGE_BLOCKS_MAX - 1] + [context(f"…and more ({hidden} sections hidden).")]
    return blocks


def chunks(lines: list[str], limit: int) -> list[str]:
    """Lines joined into texts of at most `limit` characters each (one per section block)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def declare_modal(config: Config, *, severity: str | None, channel: str, statuspage: bool = False) -> dict[str, Any]:
    options = [
        {"text": _text("plain_text", f"{name} · {config.policy(name).label}"), "value": name}
        for name in config.severities
    ]
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": ids.SEVERITY_INPUT,
        "options": options,
    }
    if severity:
        select["initial_option"] = next(o for o in options if o["value"] == severity)
    return {
        "type": "modal",
        "callback_id": ids.DECLARE_MODAL,
        "private_metadata": json.dumps({"channel": channel}),
        "title": _text("plain_text", "Declare an incident"),
        "submit": _text("plain_text", "Declare"),
        "close": _text("plain_text", "Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": ids.SEVERITY_BLOCK,
                "label": _text("plain_text", "Severity"),
                "element": select,
            },
            {
                "type": "input",
                "block_id": ids.TITLE_BLOCK,
                "label": _text("plain_text", "What is happening?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.TITLE_INPUT,
                    "max_length": TITLE_MAX,
                    "placeholder": _text("plain_text", "Checkout returns 500"),
                },
            },
        ]
        + ([_public_tick("Post this title to the status page")] if statuspage else []),
    }


def _public_tick(label: str) -> Block:
    """The form's status-page tick: text goes public only when it is ticked."""
    return {
        "type": "input",
        "block_id": ids.PUBLIC_BLOCK,
        "optional": True,
        "label": _text("plain_text", "Status page"),
        "element": {
            "type": "checkboxes",
            "action_id": ids.PUBLIC_INPUT,
            "options": [{"text": _text("plain_text", label), "value": "yes"}],
        },
    }


def update_modal(incident: Incident, statuspage: bool = False) -> dict[str, Any]:
    options = [{"text": _text("plain_text", s.capitalize()), "value": s} for s in STATUSES if s != "resolved"]
    current = next((o for o in options if o["value"] == incident.status), options[0])
    return {
        "type": "modal",
        "callback_id": ids.UPDATE_MODAL,
        "private_metadata": json.dumps({"incident": incident.number}),
        "title": _text("plain_text", f"Update {incident.ref}"[:24]),
        "submit": _text("plain_text", "Post update"),
        "close": _text("plain_text", "Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": ids.UPDATE_TEXT_BLOCK,
                "label": _text("plain_text", "What do we know now?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": ids.UPDATE_TEXT_INPUT,
                    "multiline": True,
                    "max_length": 2900,
                },
            },
            {
                "type": "input",
                "block_id": ids.STATUS_BLOCK,
                "label": _text("plain_text", "Status"),
                "element": {
                    "type": "radio_buttons",
                    "action_id": ids.STATUS_INPUT,
                    "options": options,
                    "initial_option": current,
                },
            },
        ]
        + ([_public_tick("Also post to the status page")] if statuspage else []),
    }


def page(config: Config, incident: Incident, detail: str) -> list[Block]:
    """The DM that pages someone: what, how bad, how fast, where to go, and the Acknowledge button."""
    if incident.war_room_id:
        room = f"War room: <#{incident.war_room_id}>"
    elif config.has_war_room(incident.severity) and incident.is_open:
        room = f"Announced in #{config.channel}; the war room link follows here"  # edited in, PAGE_LINK
    else:
        room = f"Announced in #{config.channel}"
    return [
        header(f"📟 You are paged: {incident.ref} · {severity_label(config, incident.severity)}"),
        section(f"*{user_text(incident.title, 1000)}*\n{room}. Commander <@{incident.commander}>."),
        context(f"SLA: {sla_text(config, incident.severity)}. You were paged as {detail}."),
        {
            "type": "actions",
            "block_id": "page_actions",
            "elements": [button("Acknowledge", ids.ACK, str(incident.number), style="primary")],
        },
    ]


def page_closed(config: Config, incident: Incident) -> list[Block]:
    """What a page turns into once someone acknowledged: no button left to press."""
    who = pagerduty.person(incident.acknowledged_by) if incident.acknowledged_by else "someone"
    state = "resolved" if not incident.is_open else f"acknowledged by {who}"
    return [
        section(
            f"✅ *{incident.ref}* ({severity_label(config, incident.severity)}) was {state}. No action needed from you."
        ),
        context(user_text(incident.title, 500)),
    ]


# Incidents in one page digest: a section each (two with a header), within Slack's 50 blocks.
DIGEST_MAX = 20


def page_digest_text(incidents: list[Incident]) -> str:
    """A digest's notification text: every incident in it, so the phone shows them all."""
    return f"📟 You are paged: {', '.join(i.ref for i in incidents)} ({len(incidents)} incidents)"


def page_digest(config: Config, pages: list[tuple[Incident, str, bool]]) -> list[Block]:
    """Several pages to one person in one DM (a storm of incidents): each incident its own section
    with its own Acknowledge button, or, once it is `closed` (acknowledged, resolved), none."""
    out: list[Block] = [header(f"📟 You are paged for {len(pages)} incidents")]
    for incident, detail, closed in pages[:DIGEST_MAX]:
        label = severity_label(config, incident.severity)
        if closed:
            who = pagerduty.person(incident.acknowledged_by) if incident.acknowledged_by else "someone"
            state = "resolved" if not incident.is_open else f"acknowledged by {who}"
            out.append(
                {
                    "type": "section",
                    "block_id": f"page_{incident.number}",
                    "text": _text(
                        "mrkdwn",
                        f"✅ *{incident.ref}* ({label}) was {state}. No action needed from you.\n"
                        f"{user_text(incident.title, 500)}"[:SECTION_MAX],
                    ),
                }
            )
            continue
        if incident.war_room_id:
            room = f"War room: <#{incident.war_room_id}>"
        elif config.has_war_room(incident.severity):
            room = f"Announced in #{config.channel}; the war room link follows here"
        else:
            room = f"Announced in #{config.channel}"
        text = (
            f"*{incident.ref} · {label}*: *{user_text(incident.title, 1000)}*\n{room}. "
            f"Commander <@{incident.commander}>. SLA: {sla_text(config, incident.severity)}. You were paged as {detail}."
        )
        out.append(
            {
                "type": "section",
                "block_id": f"page_{incident.number}",
                "text": _text("mrkdwn", text[:SECTION_MAX]),
                "accessory": button("Acknowledge", ids.ACK, str(incident.number), style="primary"),
            }
        )
    return out


def fyi(config: Config, incident: Incident) -> list[Block]:
    room = f"<#{incident.war_room_id}>" if incident.war_room_id else f"#{config.channel}"
    return [
        section(
            f"FYI: *{incident.ref}* ({severity_label(config, incident.severity)}) was declared: "
            f"*{user_text(incident.title, 1000)}*\nFollow it in {room}. No action is needed from you unless you are paged."
        )
    ]


def reminder(config: Config, incident: Incident, count: int, since: timedelta) -> list[Block]:
    """The war-room nag for an update. Edited in place for each new reminder, never stacked."""
    every = config.policy(incident.severity).update_every
    cadence = f" The {incident.severity} cadence is every {humanize(every)}." if every else ""
    nth = "" if count == 1 else f" (reminder {count} in a row)"
    value = str(incident.number)
    return [
        section(
            f"⏰ <@{incident.commander}>: *{incident.ref}* has had no update for {humanize(since)}{nth}. "
            f'No news is bad news: say what you know, even if it is "still investigating".{cadence}'
        ),
        {
            "type": "actions",
            "block_id": "reminder_actions",
            "elements": [
                button("Post update", ids.POST_UPDATE, value, style="primary"),
                button("Snooze 30 min", ids.SNOOZE_30M, f"{value}:30"),
                button("Snooze 1 h", ids.SNOOZE_1H, f"{value}:60"),
            ],
        },
    ]


def reminder_escalation(config: Config, incident: Incident, since: timedelta) -> list[Block]:
    room = f"<#{incident.war_room_id}>" if incident.war_room_id else f"#{config.channel}"
    return [
        section(
            f"⏰ *{incident.ref}* ({severity_label(config, incident.severity)}) has had no update for "
            f"{humanize(since)}, and its reminders went unanswered. Commander <@{incident.commander}>. "
            f"Please check in on {room}.\n*{user_text(incident.title, 500)}*"
        )
    ]


def fix_nudge(config: Config, incident: Incident, fix_within: str) -> list[Block]:
    return [
        section(
            f"⏱ *{incident.ref}*: {fix_within} since it was declared and no fix is under way yet "
            f"(the {incident.severity} target). Runbook step 5, *Investigate & fix*: "
            "`/incident diagnose` checks Cloud Run, recent errors and the health endpoint in seconds and names "
            "the likely scenario; `/incident runbook` lists them all. Post `/incident update identified …` once "
            "you know the cause."
        )
    ]


def resolved_elsewhere(incident: Incident, text: str) -> list[Block]:
    """PagerDuty says it is resolved: the bot never resolves by itself, so a button offers it."""
    return [
        section(text),
        {"type": "actions", "elements": [button("Resolve", ids.RESOLVE, str(incident.number), style="primary")]},
    ]
