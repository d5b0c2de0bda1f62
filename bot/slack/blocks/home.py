"""The App Home tab: a person's shifts now and next, their open incidents with their role in each,
and the pages to them still waiting for an ack, each with the Acknowledge button (`incident_ack`).

A Home tab view is `{"type": "home", "blocks": [...]}` with at most 100 blocks (Slack's view
limit); each list is cut short with a count of the rest, so the view always fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.mrkdwn import user_text
from bot.domain.coverage import Span
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.slack import ids
from bot.slack.blocks.incident import SEVERITY_MARK, Block, button, context, header, section, severity_label, slack_date

VIEW_BLOCKS_MAX = 100
SHIFTS_SHOWN = 10
INCIDENTS_SHOWN = 20
PAGES_SHOWN = 15


@dataclass(frozen=True)
class ScheduleShifts:
    schedule: str
    timezone: str
    shifts: Sequence[Span]  # this person's, now and next


@dataclass(frozen=True)
class WaitingPage:
    incident: Incident
    paged_at: datetime


def home_view(
    config: Config,
    user: str,
    shifts: Sequence[ScheduleShifts],
    incidents: Sequence[tuple[Incident, Sequence[str]]],
    pages: Sequence[WaitingPage],
    now: datetime,
    note: str | None = None,
) -> dict[str, Any]:
    blocks: list[Block] = []
    if note:
        blocks.append(section(note))
    blocks += _pages(config, pages, now)
    blocks += _incidents(config, incidents)
    blocks += _shifts(shifts, now)
    blocks.append(
        context(f"Refreshed {slack_date(now)} when you opened this tab. `/incident help` lists the commands.")
    )
    return {"type": "home", "blocks": blocks[:VIEW_BLOCKS_MAX]}


def _pages(config: Config, pages: Sequence[WaitingPage], now: datetime) -> list[Block]:
    if not pages:
        return []
    out: list[Block] = [header(f"📟 Paged, waiting for your ack ({len(pages)})")]
    for page in pages[:PAGES_SHOWN]:
        incident = page.incident
        where = f" · <#{incident.war_room_id}>" if incident.war_room_id else ""
        out.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": (
                        f"{SEVERITY_MARK.get(incident.severity, '')} *{incident.ref}* · "
                        f"{severity_label(config, incident.severity)}: {user_text(incident.title, 500)}\n"
                        f"Paged {slack_date(page.paged_at)}{where}"
                    )[:3000],
                },
                "accessory": button("Acknowledge", ids.ACK, str(incident.number), style="primary"),
            }
        )
    if len(pages) > PAGES_SHOWN:
        out.append(context(f"… and {len(pages) - PAGES_SHOWN} more: `/incident list`"))
    return out


def _incidents(config: Config, incidents: Sequence[tuple[Incident, Sequence[str]]]) -> list[Block]:
    out: list[Block] = [header("🔥 Your open incidents")]
    if not incidents:
        out.append(section("You hold no role in an open incident."))
        return out
    lines = []
    for incident, roles in incidents[:INCIDENTS_SHOWN]:
        room = f" · <#{incident.war_room_id}>" if incident.war_room_id else ""
        lines.append(
            f"{SEVERITY_MARK.get(incident.severity, '')} *{incident.ref}* ({incident.severity}, {incident.status}) "
            f"{user_text(incident.title, 150)} · you are *{', '.join(roles)}*{room}"
        )
    if len(incidents) > INCIDENTS_SHOWN:
        lines.append(f"… and {len(incidents) - INCIDENTS_SHOWN} more")
    out.append(section("\n".join(lines)))
    return out


def _shifts(shifts: Sequence[ScheduleShifts], now: datetime) -> list[Block]:
    if not shifts:
        return []
    out: list[Block] = [header("🗓 Your on-call shifts")]
    for entry in shifts:
        if not entry.shifts:
            out.append(section(f"*{entry.schedule}*: no shift for you in the coming two weeks."))
            continue
        lines = []
        for span in entry.shifts[:SHIFTS_SHOWN]:
            state = "*now*, until" if span.starts_at <= now else f"from {slack_date(span.starts_at)} until"
            lines.append(f"• {state} {slack_date(span.ends_at)}" + (" (override)" if span.override else ""))
        out.append(section(f"*{entry.schedule}* ({entry.timezone})\n" + "\n".join(lines)))
    return out
