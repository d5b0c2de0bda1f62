"""Block Kit for alerts: the proposal in the announcement channel, and lines about alerts.

Pure, like `bot/blocks.py`: an alert record in, blocks out. The proposal is one message kept
current by editing it: buttons while it waits for a decision, then who declared or dismissed
it, or that the alert resolved by itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.mrkdwn import escape, link, user_text
from bot.domain import refires
from bot.domain.alerts import SOURCE_NAMES, attached_line, link_label
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import AlertRecord
from bot.domain.scenarios import Scenario
from bot.slack import ids
from bot.slack.blocks.incident import (
    Block,
    button,
    confirm_dialog,
    context,
    header,
    section,
    severity_label,
    slack_date,
)

SUMMARY_MAX = 1500


def source_name(alert: AlertRecord) -> str:
    return SOURCE_NAMES.get(alert.source, alert.source)


def proposal_text(config: Config, alert: AlertRecord) -> str:
    """The notification text of a proposal."""
    return f"🚨 Alert: {escape(alert.policy)} ({source_name(alert)}). Declare {severity_label(config, alert.severity)}?"


def proposal(
    config: Config,
    alert: AlertRecord,
    scenario: Scenario | None,
    incident: Incident | None = None,
    group: list[AlertRecord] | None = None,
) -> list[Block]:
    """The proposal as the alert's state has it: open with buttons, or decided, or resolved.
    An alert group's one proposal also counts and lists its alerts."""
    mark = "🚨" if alert.is_open and alert.incident is None and not alert.dismissed_by else "▫️"
    blocks: list[Block] = [header(f"{mark} Alert: {alert.policy}")]
    if alert.summary:
        blocks.append(section(user_text(alert.summary, SUMMARY_MAX)))
    fields = [
        f"*Source*\n{source_name(alert)}",
        f"*Firing since*\n{slack_date(alert.started_at)}",
        f"*Would be*\n{severity_label(config, alert.severity)}",
    ]
    url = link(alert.url, link_label(alert).capitalize())
    if url:
        fields.append(f"*Alert*\n{url}")
    if scenario is not None:
        fields.append(
            f"*Runbook*\nScenario {scenario.number}: {escape(scenario.title)} (`/incident runbook {scenario.number}`)"
        )
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]})
    if scenario is not None:
        blocks.append(
            context(f"Its trigger: {escape(scenario.alert_trigger)} First check: {escape(scenario.first_checks[0])}")
        )
    if group is not None and len(group) > 1:
        blocks.extend(group_status(group)[1])
    blocks.append(_state(alert, incident))
    return blocks


def _state(alert: AlertRecord, incident: Incident | None) -> Block:
    if alert.incident is not None:
        who = f" by <@{incident.declared_by}>" if incident is not None else ""
        return context(f"✅ Declared as INC-{alert.incident}{who}.")
    if alert.dismissed_by:
        return context(f"Dismissed by <@{alert.dismissed_by}>.")
    if not alert.is_open:
        ended = alert.ended_at or alert.closed_at
        at = f" at {ended:%H:%M} UTC" if ended else ""
        return context(f"✅ Resolved by itself{at}; no incident was declared.")
    value = f"alert:{alert.id}"
    return {
        "type": "actions",
        "block_id": "alert_actions",
        "elements": [
            button(f"Declare {alert.severity}", ids.ALERT_DECLARE, value, style="primary"),
            button("Dismiss", ids.ALERT_DISMISS, value),
        ],
    }


def still_firing(alert: AlertRecord) -> str:
    return (
        f"🔁 Still firing: *{escape(alert.policy)}* ({source_name(alert)}, notification {alert.notifications}, "
        f"since {alert.started_at:%H:%M} UTC)."
    )


def all_closed(incident: Incident, alerts: list[AlertRecord]) -> tuple[str, list[Block]]:
    """The incident's one line once every alert attached to it has closed: a suggestion to resolve
    (the bot never resolves by itself: the alert stopping is not the fix verified). Each closing
    is counted in its group's message, not a line of its own."""
    last = max(alerts, key=lambda a: a.ended_at or a.closed_at or a.started_at)
    ended = last.ended_at or last.closed_at
    at = f"{ended:%H:%M} UTC" if ended else "just now"
    count = f"all {len(alerts)} alerts" if len(alerts) != 1 else "its alert"
    text = (
        f"🟢 Every alert attached to {incident.ref} has closed ({count}; the last at {at}: "
        f"*{escape(last.policy)}*, {source_name(last)})."
    )
    suggestion = (
        "If the runbook's checks agree (error rate under 1%, health 200, a real call works), "
        f"resolve it: `/incident resolve {incident.ref} <summary>`."
    )
    resolve: dict[str, Any] = button("Resolve", ids.RESOLVE, str(incident.number))
    return f"{text} {suggestion}", [
        section(text),
        {"type": "section", "text": {"type": "mrkdwn", "text": suggestion}, "accessory": resolve},
    ]


GROUP_LINES = 20  # the group message lists this many alerts; the rest are counted


def _firing_lines(firing: list[AlertRecord], limit: int) -> list[str]:
    """The first `limit` firing alerts, a line each, and a count of the rest."""
    lines = [attached_line(a) for a in firing[:limit]]
    if len(firing) > limit:
        lines.append(f"… and {len(firing) - limit} more firing.")
    return lines


def group_status(alerts: list[AlertRecord]) -> tuple[str, list[Block]]:
    """An incident's one message for an alert group ("HighErrorRate: 31 firing, 4 closed"),
    edited in place as alerts join, repeat and close instead of a line per alert per re-send."""
    firing = [a for a in alerts if a.is_open]
    closed = len(alerts) - len(firing)
    notifications = sum(a.notifications for a in alerts)
    head = (
        f"🔔 *{escape(alerts[0].policy)}*: {len(firing)} firing, {closed} closed"
        f" ({notifications} notification{'s' if notifications != 1 else ''},"
        f" last at {max(a.last_seen_at for a in alerts):%H:%M:%S} UTC)."
    )
    lines = _firing_lines(firing, GROUP_LINES)
    blocks = [section(head)]
    for start in range(0, len(lines), 5):  # a section holds 3,000 characters; a line at most ~450
        blocks.append(section("\n".join(lines[start : start + 5])[:3000]))
    return head, blocks  # the text is the notification; the blocks list the alerts


REFIRE_LINES = 5  # the re-fire message lists this many alerts; the rest are counted


def refire(
    alerts: list[AlertRecord],
    number: int,
    resolved_at: datetime,
    reopened: tuple[str, datetime] | None,
) -> tuple[str, list[Block]]:
    """A resolved incident's one message for an alert group firing again: nothing declared,
    nobody paged, a **Reopen** button; edited as it fires again (count, last at), and once
    someone reopens it, to say who (the button gone)."""
    ref = f"INC-{number}"
    policy = escape(alerts[0].policy)
    after = refires.after_text(resolved_at, min(a.started_at for a in alerts))
    text = f"🔁 {policy} is firing again, {after} {ref} was resolved"
    firing = [a for a in alerts if a.is_open]
    notifications = sum(a.notifications for a in alerts)
    head = f"🔁 *{policy}* is firing again, {after} {ref} was resolved."
    count = (
        f"{notifications} firing notification{'s' if notifications != 1 else ''} since the resolution,"
        f" last at {max(a.last_seen_at for a in alerts):%H:%M:%S} UTC · {len(firing)} firing,"
        f" {len(alerts) - len(firing)} closed."
    )
    lines = _firing_lines(firing, REFIRE_LINES)
    blocks: list[Block] = [section(head), context(count)]
    if lines:
        blocks.append(section("\n".join(lines)[:3000]))
    if reopened is not None:
        who, at = reopened
        blocks.append(context(f"✅ <@{who}> reopened {ref} at {at:%H:%M} UTC."))
        return f"{text}. Reopened by <@{who}>.", blocks
    blocks.append(
        context(
            f"Nothing was declared and nobody was paged. If the problem is back, reopen {ref}: its paging starts again."
        )
    )
    confirm = confirm_dialog(
        f"Reopen {ref}?",
        f"{ref} opens again, and its paging and reminders start again from now.",
        "Reopen",
        "Not now",
        style="primary",
    )
    blocks.append(
        {
            "type": "actions",
            "block_id": "refire_actions",
            "elements": [button(f"Reopen {ref}", ids.REOPEN, str(number), style="primary", confirm=confirm)],
        }
    )
    return f"{text}. Nothing was declared.", blocks
