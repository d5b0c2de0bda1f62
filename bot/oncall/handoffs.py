"""Handoff notices: at each rotation handoff, a DM to the person coming on call and one to the
person going off, listing the open incidents.

Restart-safe like every timer: a handoff is claimed in the store (one row per schedule and
handoff instant) together with the DMs it owes, in one transaction, so it is noticed once
however often the job runs or the bot restarts. The DMs are sent until Slack accepts them; a
post cut short by a crash is looked for in Slack before it is sent again. A handoff that passed
while the bot was down is noticed at start-up, unless it is more than an hour old; after a long
outage only the latest handoff is noticed, not every one that was missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.context import Announcing
from bot.core.mrkdwn import escape
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import HandoffNotice
from bot.domain.schedules import Schedule, handoff_after, on_call, shift_at, when
from bot.oncall.directory import Directory, PeopleError
from bot.slack.blocks import incident as blocks
from bot.slack.gateway import SlackGateway, error_code
from bot.store import Store

log = logging.getLogger(__name__)

NOTICE_GRACE = timedelta(hours=1)  # older handoffs are history by the time the bot is back
RETRY_AFTER = timedelta(seconds=30)  # a DM Slack did not take
IDLE_AFTER = timedelta(hours=1)  # a safety net: the store is looked at at least this often
_EPS = timedelta(microseconds=1)


class HandoffNotices:
    def __init__(
        self,
        config: Config,
        store: Store,
        slack: SlackGateway,
        announcer: Announcing,
        directory: Directory,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.announcer = announcer
        self.directory = directory
        self.clock = clock

    def run(self) -> datetime:
        """Claim the handoffs that came due, send the DMs owed; when to run next. Never raises."""
        now = self.clock()
        try:
            for schedule in self.config.schedules.values():
                self.claim(schedule, now)
            unsent = self.send_pending()
            upcoming = [handoff_after(s, now) for s in self.config.schedules.values()]
        except Exception:  # noqa: BLE001 - the job must outlive any one failure; the store keeps what is owed
            log.exception("handoff notices failed; trying again in %s", RETRY_AFTER)
            return now + RETRY_AFTER
        return min([now + IDLE_AFTER, *upcoming, *([now + RETRY_AFTER] if unsent else [])])

    def claim(self, schedule: Schedule, now: datetime) -> bool:
        """Record the latest handoff of `schedule` and the DMs it owes, once; True if this call did."""
        shift = shift_at(schedule, now)
        if shift is None or now - shift.starts_at > NOTICE_GRACE:
            return False
        overrides = self.store.overrides(schedule.name, ending_after=shift.starts_at - _EPS)
        incoming = on_call(schedule, overrides, shift.starts_at)
        outgoing = on_call(schedule, overrides, shift.starts_at - _EPS) if shift.index > 0 else None
        notices: list[tuple[str, str, str]] = []
        if incoming is not None and (outgoing is None or outgoing.user != incoming.user):
            until = when(incoming.until, schedule, now)
            incidents = _open_incidents(self.store.open_incidents())
            notices.append(
                ("in", incoming.user, f"📟 You are on call for *{schedule.name}* until {until}. {incidents}")
            )
            if outgoing is not None:
                text = (
                    f"👋 Your *{schedule.name}* shift is over: {_name(incoming.user)} is on call until {until}. "
                    f"Handover: {incidents}"
                )
                notices.append(("out", outgoing.user, text))
        return self.store.claim_handoff(schedule.name, shift.starts_at, notices, now)

    def send_pending(self) -> list[HandoffNotice]:
        """Send every DM owed; the ones Slack did not take this time (they are retried)."""
        unsent = []
        for notice in self.store.pending_handoff_notices():
            try:
                user = self.directory.users(notice.user)[0]
                key = f"handoff:{notice.schedule}:{notice.at.isoformat()}:{notice.side}"
                self.announcer.post_once(key, self.slack.open_dm(user), notice.text, [blocks.section(notice.text)])
            except PeopleError as exc:
                # No retry will find a person who is not in Slack: said once in the log, then dropped.
                log.warning("handoff notice for %s not sent: %s", notice.user, exc)
            except (SlackApiError, OSError) as exc:
                reason = error_code(exc) if isinstance(exc, SlackApiError) else str(exc)
                log.warning("handoff notice to %s failed (%s); retrying in %s", notice.user, reason, RETRY_AFTER)
                unsent.append(notice)
                continue
            self.store.finish_handoff_notice(notice.id, self.clock())
        return unsent


def _name(ref: str) -> str:
    return f"<@{ref}>" if ref[:1] in {"U", "W"} and "@" not in ref else escape(ref)


def _open_incidents(incidents: list[Incident]) -> str:
    if not incidents:
        return "No incidents are open."
    shown = [f"{i.ref} ({i.severity} · {escape(i.title)})" for i in incidents[:10]]
    more = f" and {len(incidents) - 10} more" if len(incidents) > 10 else ""
    verb = "is" if len(incidents) == 1 else "are"
    return f"{', '.join(shown)}{more} {verb} open."
