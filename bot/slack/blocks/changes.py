"""Block Kit for proposed production changes: the proposal, its progress and its outcome.

Pure builders: they take what the bot knows and return blocks. A proposal message is edited
in place as it moves on (proposed -> in progress -> outcome), and loses its buttons once it is
no longer pending.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core.durations import humanize
from bot.core.mrkdwn import escape
from bot.domain.proposals import Proposal, ProposalKind, service_short
from bot.domain.service import RevisionState, ServiceState
from bot.slack import ids
from bot.slack.blocks.incident import button, confirm_dialog, context, section, slack_date

Block = dict[str, Any]

_TITLES: dict[str, str] = {
    ProposalKind.ROLLBACK: ":rewind: Roll back",
    ProposalKind.SCALE_MEMORY: ":arrow_up: Change memory",
    ProposalKind.SCALE_MAX_INSTANCES: ":arrow_up: Change max instances",
}


def traffic_line(service: ServiceState) -> str:
    """`tai-00043-bad 100% (latest)` for each share of traffic (a tagged 0% target too: its
    tag URL serves)."""
    shares = [
        f"`{escape(t.revision)}` {t.percent}%"
        + (" (latest)" if t.latest else "")
        + (f" tag `{escape(t.tag)}`" if t.tag else "")
        for t in sorted(service.traffic, key=lambda t: -t.percent)
        if t.percent or t.tag
    ]
    return ", ".join(shares) or "no traffic"


def proposal_text(p: Proposal, incident_ref: str) -> str:
    return f"{incident_ref}: proposal to {p.what} (needs a confirm)"


def proposal_blocks(
    p: Proposal,
    incident_ref: str,
    service: ServiceState,
    who_may: str,
    expires_after: timedelta,
    target: RevisionState | None = None,
    template_from: RevisionState | None = None,
) -> list[Block]:
    name = escape(service_short(service))
    lines = [f"*Traffic now:* {traffic_line(service)}"]
    if p.kind == ProposalKind.ROLLBACK and target is not None:
        created = slack_date(target.created_at) if target.created_at else "unknown time"
        tagged = [t for t in service.traffic if t.tag]
        stays = (
            "Tagged targets stay, with their tags and URLs: "
            + ", ".join(
                f"`{escape(t.tag)}` → `{escape(t.revision)}`" + (f" ({t.percent}% → 0%)" if t.percent else " (0%)")
                for t in tagged
            )
            + ". Nothing else changes."
            if tagged
            else "Nothing else changes."
        )
        lines.append(
            f"*Roll back to:* `{escape(target.name)}`, created {created}, :white_check_mark: Ready. "
            f"All traffic (100%) moves to it. {stays}"
        )
        if target.image:
            lines.append(f"*Image:* `{escape(target.image)}`")
    else:
        label = "Memory limit" if p.kind == ProposalKind.SCALE_MEMORY else "Max instances"
        lines.append(f"*{label}:* {escape(p.current or 'not set')} → *{escape(p.target)}*")
        lines.append("This changes the revision template, so Cloud Run makes a new revision.")
        if p.pinned:
            lines.append(
                f":warning: Traffic is pinned to `{escape(p.serving_revision)}`, so the new revision "
                "would get *no traffic*. Choose below whether to move all traffic to it as well."
            )
            if template_from is not None and template_from.name != p.serving_revision:
                # After a rollback the template still holds the rolled-back-from image.
                lines.append(
                    f":warning: The new revision is built from the service's template, which last made "
                    f"`{escape(template_from.name)}` (image `{escape(template_from.image)}`), "
                    f"not from `{escape(p.serving_revision)}`."
                )
    lines.append(f"*Who may confirm:* {who_may}")
    blocks: list[Block] = [
        section(f"*{_TITLES[p.kind]}* {name} · {incident_ref} · proposed by <@{p.proposer}>"),
        section("\n".join(lines)),
    ]
    value = f"{p.incident}:{p.id}"
    if p.kind == ProposalKind.ROLLBACK:
        confirm = button(
            "Roll back",
            ids.ROLLBACK_CONFIRM,
            value,
            style="danger",
            confirm=_dialog("Roll back?", f"Move 100% of {name}'s traffic to {p.target}?", "Roll back"),
        )
        blocks.append({"type": "actions", "elements": [confirm, button("Cancel", ids.ROLLBACK_CANCEL, value)]})
    elif p.pinned:
        # Two choices with the same action_id, so each sits in its own actions block.
        question = f"{_sentence(p.what)} on {name}"
        move = button(
            "Change it and move traffic to the new revision",
            ids.SCALE_CONFIRM,
            f"{value}:move",
            style="danger",
            confirm=_dialog(
                "Change and move traffic?", f"{question}, then send 100% of traffic to the new revision?", "Confirm"
            ),
        )
        stay = button(
            "Change it only (traffic stays pinned)",
            ids.SCALE_CONFIRM,
            f"{value}:stay",
            style="danger",
            confirm=_dialog("Change only?", f"{question}; traffic stays on {p.serving_revision}?", "Confirm"),
        )
        blocks.append({"type": "actions", "block_id": "scale_move", "elements": [move]})
        blocks.append(
            {"type": "actions", "block_id": "scale_stay", "elements": [stay, button("Cancel", ids.SCALE_CANCEL, value)]}
        )
    else:
        confirm = button(
            "Confirm",
            ids.SCALE_CONFIRM,
            f"{value}:move",
            style="danger",
            confirm=_dialog(
                "Change the service?", f"{_sentence(p.what)} on {name}? This makes a new revision.", "Confirm"
            ),
        )
        blocks.append({"type": "actions", "elements": [confirm, button("Cancel", ids.SCALE_CANCEL, value)]})
    minutes = humanize(expires_after)
    blocks.append(context(f"Expires in {minutes}. The bot re-checks traffic before it changes anything."))
    return blocks


def status_blocks(p: Proposal, incident_ref: str, line: str) -> list[Block]:
    """The proposal after it stopped being pending: what it was, and what became of it."""
    return [
        section(f"*{_TITLES[p.kind]}* · {incident_ref} · proposed by <@{p.proposer}>: {escape(p.what)}"),
        section(line[:2900]),
    ]


def took(started: datetime | None, now: datetime) -> str:
    if started is None:
        return ""
    seconds = (now - started).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _dialog(title: str, text: str, confirm: str) -> dict[str, Any]:
    return confirm_dialog(title, text, confirm, deny="Not now")
