"""Block Kit for the end of an incident: the resolve form, the all-clear, the timeline, stats. Pure.

User text goes through `mrkdwn.user_text` (escaped, cut to the block's limit) like every other
builder; timeline lines are already mrkdwn as stored.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from bot.core.durations import humanize
from bot.core.mrkdwn import user_text
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import Event
from bot.domain.timeline import by_phase, utc
from bot.slack import ids
from bot.slack.blocks.incident import MESSAGE_BLOCKS_MAX, SECTION_MAX, chunks, context, header, section, severity_label

Block = dict[str, Any]
FORM_TEXT_MAX = 2000  # the longest summary, root cause or impact the form accepts


def _text(kind: str, text: str) -> dict[str, Any]:
    return {"type": kind, "text": text}


def resolve_modal(incident: Incident, *, statuspage: bool, channel: str | None) -> dict[str, Any]:
    """The Resolve button's form. The status-page tick is there only when a status page is
    configured, and starts empty: the summary goes public only when someone ticks it."""

    def text_input(block_id: str, action_id: str, label: str, optional: bool, placeholder: str) -> Block:
        return {
            "type": "input",
            "block_id": block_id,
            "optional": optional,
            "label": _text("plain_text", label),
            "element": {
                "type": "plain_text_input",
                "action_id": action_id,
                "multiline": True,
                "max_length": FORM_TEXT_MAX,
                "placeholder": _text("plain_text", placeholder),
            },
        }

    blocks = [
        text_input(
            ids.RESOLVE_SUMMARY_BLOCK,
            ids.RESOLVE_SUMMARY_INPUT,
            "What happened and what fixed it?",
            False,
            "Rolled back to 00042; error rate back under 1%",
        ),
        text_input(
            ids.ROOT_CAUSE_BLOCK, ids.ROOT_CAUSE_INPUT, "Root cause", True, "Bad deploy 00043: a nil config key"
        ),
        text_input(ids.IMPACT_BLOCK, ids.IMPACT_INPUT, "Customer impact", True, "All checkouts failed for 15 minutes"),
    ]
    if statuspage:
        option = {"text": _text("plain_text", "Post the resolution on the status page"), "value": "yes"}
        element: dict[str, Any] = {"type": "checkboxes", "action_id": ids.RESOLVE_PUBLIC_INPUT, "options": [option]}
        blocks.append(
            {
                "type": "input",
                "block_id": ids.RESOLVE_PUBLIC_BLOCK,
                "optional": True,
                "label": _text("plain_text", "Status page"),
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": ids.RESOLVE_MODAL,
        "private_metadata": json.dumps({"incident": incident.number, "channel": channel}),
        "title": _text("plain_text", f"Resolve {incident.ref}"[:24]),
        "submit": _text("plain_text", "Resolve"),
        "close": _text("plain_text", "Cancel"),
        "blocks": blocks,
    }


def all_clear(
    config: Config,
    incident: Incident,
    *,
    started: datetime,
    summary: str | None,
    customer_impact: str | None,
) -> tuple[str, list[Block]]:
    """The runbook's all-clear: what happened, how long from the start, time to acknowledge, impact."""
    assert incident.resolved_at is not None
    duration = humanize(incident.resolved_at - started)
    since = "the first alert" if started != incident.declared_at else "declaration"
    # A resolve without an ack fills in the ack at the same moment: that is no acknowledgement.
    if incident.acknowledged_at is not None and incident.acknowledged_at < incident.resolved_at:
        ack = humanize(incident.acknowledged_at - started)
        ack_within = config.policy(incident.severity).ack_within
        if ack_within is not None:
            ack += " (within the target)" if incident.acknowledged_at - started <= ack_within else " (target missed)"
    else:
        ack = "not acknowledged before the resolution"
    what = user_text(summary, FORM_TEXT_MAX) if summary else "_no summary given_"
    impact = user_text(customer_impact, FORM_TEXT_MAX) if customer_impact else "_not recorded_"
    text = f"✅ {incident.ref} is resolved after {duration}. All clear."
    fields = [
        f"*Duration*\n{duration} from {since} to resolution",
        f"*Time to acknowledge*\n{ack}",
        f"*Severity*\n{severity_label(config, incident.severity)}",
    ]
    blocks: list[Block] = [
        header(f"✅ All clear: {incident.ref} resolved"),
        section(
            f"<@{incident.resolved_by}> resolved {incident.ref}: *{user_text(incident.title, 500)}*\n"
            f"*What happened:* {what}"[:SECTION_MAX]
        ),
        {"type": "section", "fields": [_text("mrkdwn", f) for f in fields]},
        section(f"*Customer impact:* {impact}"[:SECTION_MAX]),
    ]
    if incident.severity in config.postmortem_severities:
        due = humanize(config.postmortem_due_after)
        blocks.append(
            context(
                f"Post-mortem due within {due}; its draft, with this timeline, is uploaded here. "
                "`/incident followup &lt;action&gt;` records follow-ups; `/incident reopen` if it comes back."
            )
        )
    return text, blocks


def timeline(incident: Incident, events: list[Event], started: datetime) -> list[Block]:
    """`/incident timeline`: every line with its UTC date and time, grouped by phase."""
    blocks: list[Block] = [header(f"{incident.ref} timeline (UTC)")]
    for phase, group in by_phase(events):
        lines = [f"`{utc(e.at)}` {_since(e.at, started)} · {e.text}" for e in group]
        for i, chunk in enumerate(chunks(lines, SECTION_MAX - 40)):
            title = f"*{phase.capitalize()}*\n" if i == 0 else ""
            blocks.append(section(title + chunk))
    if len(blocks) > MESSAGE_BLOCKS_MAX:
        hidden = len(blocks) - MESSAGE_BLOCKS_MAX + 1
        blocks = blocks[: MESSAGE_BLOCKS_MAX - 1] + [
            context(f"…{hidden} more sections: `incident-bot postmortem {incident.ref}` has the whole timeline.")
        ]
    return blocks


def _since(moment: datetime, start: datetime) -> str:
    delta = moment - start
    return f"(-{humanize(-delta)})" if delta < timedelta(0) else f"(+{humanize(delta)})"


def stats(lines: list[str]) -> list[Block]:
    """The stats report: its headline in bold, then a line per severity."""
    blocks = [section(f"*{lines[0]}*")]
    if lines[1:]:
        blocks.append(section("\n".join(lines[1:])))
    return blocks
