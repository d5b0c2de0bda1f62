"""Opening an incident: the one way in, for the command, the form and alerts; then its set-up
(announcement, war room, first steps) after the ack. Paging starts the moment the incident is
committed: a page never waits for the announcement or the war room (the page DM is edited to
link the war room once it exists, `DeliveryKind.PAGE_LINK`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import Context, Reply
from bot.core.text import plain
from bot.domain import pagerduty
from bot.domain.deliveries import status_page_firing
from bot.domain.incidents import Incident, declare
from bot.incident.announcer import AnnouncementChannelError
from bot.slack.gateway import DeadlinePassed, error_code, rate_limited, retry_after_s
from bot.statuspage.client import GENERIC_BODY, GENERIC_NAME

log = logging.getLogger(__name__)


def create(
    ctx: Context,
    *,
    title: str,
    severity: str,
    user: str,
    detected_at: datetime | None = None,
    alerts: tuple[int, ...] = (),
    commander: str | None = None,
    public: bool = False,
) -> Incident:
    """Open an incident: the one way in, for the command, the form and alerts (`bot/alerts.py`).

    `alerts` are linked in the same transaction; if one already has an incident, `AlertTaken`
    is raised and nothing is stored. Call `set_up` after the ack. The status page opens by default
    (`statuspage.severities`) in general words, with the title only when asked (`--public`, the form's tick).
    """
    now = ctx.now()
    draft = declare(
        title=title,
        severity=severity,
        by=user,
        now=now,
        channel=ctx.config.channel,
        detected_at=detected_at,
        commander=commander,
    )
    statuspage = ctx.config.statuspage
    by_default = statuspage is not None and severity in statuspage.severities
    opens = ctx.statuspage is not None and (public or by_default)
    if public:
        firing = status_page_firing("create", name=plain(title), body=f"We are investigating: {plain(title)}")
    else:
        firing = status_page_firing("create", name=GENERIC_NAME, body=GENERIC_BODY)
    # PagerDuty's trigger is recorded with the incident and sent at once, on its own lane.
    firings = ((firing,) if opens else ()) + tuple(pagerduty.on_declare(ctx.paging_out, draft))
    incident = ctx.store.create_incident(draft, now, firings, alerts)
    # The first pages are due now: claimed and on their lane before any set-up call is made.
    ctx.timers.replan(incident.number)
    ctx.timers.wake_deliveries()
    return incident


def _set_up_later(ctx: Context, number: int) -> None:
    incident = ctx.store.get(number)
    if incident is not None:
        ctx.work.submit(set_up, ctx, incident)


def set_up(ctx: Context, incident: Incident) -> Reply | None:
    """After the ack: announcement, war room, first steps (the pages are already under way).

    Safe to re-run; the store says what is done.
    """
    try:
        incident = ctx.announcer.setup(incident.number)
    except AnnouncementChannelError as exc:
        return Reply(f"{incident.ref} is recorded, but {exc}")
    except SlackApiError as exc:
        log.warning("setting up %s failed: %s", incident.ref, error_code(exc))
        if rate_limited(exc):
            # Slack said when: the set-up goes on then, not at the next set-up round.
            wait = retry_after_s(getattr(exc.response, "headers", None)) or 1.0
            number = incident.number
            ctx.timers.place(f"setup-{number}", lambda: _set_up_later(ctx, number), ctx.now() + timedelta(seconds=wait))
            return None  # the person hears once it is announced
        return Reply(
            f"{incident.ref} is recorded, but Slack refused part of its set-up (`{error_code(exc)}`). "
            "It will be retried; `/incident list` shows it meanwhile."
        )
    except (OSError, DeadlinePassed) as exc:  # Slack did not answer in time (a timeout, a reset)
        log.warning("setting up %s failed: %s", incident.ref, type(exc).__name__)
        return Reply(
            f"{incident.ref} is recorded, but Slack did not answer in time during its set-up. "
            "It will be retried; `/incident list` shows it meanwhile."
        )
    finally:
        ctx.timers.replan(incident.number)
        # What waited for the announcement or war room goes now (the pages' link, "who was paged").
        ctx.store.retry_unplaced(incident.number, ctx.now())
        ctx.timers.wake_deliveries()
    room = f" War room: <#{incident.war_room_id}>." if incident.war_room_id else ""
    return Reply(f"{incident.ref} is announced in <#{incident.announcement_channel}>.{room}")
