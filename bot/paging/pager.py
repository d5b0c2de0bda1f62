"""Sending what the timers decided: pages, FYIs, "who was paged" lines, SLA warnings, reminders.

These are the paging kinds of delivery; `routes` registers their senders with the dispatcher
(`bot.delivery`), which claims, retries and recovers every delivery the same way. A page that
became moot (acknowledged, resolved) when it came to be sent is cancelled, not sent.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import Announcing, People
from bot.core.durations import humanize
from bot.core.mrkdwn import escape
from bot.delivery.dispatch import Route
from bot.delivery.errors import NotPlacedYet, Undeliverable
from bot.delivery.once import post_delivery
from bot.domain import pagerduty
from bot.domain.deliveries import Delivery, DeliveryKind, DeliveryStatus, Firing, page_link, post_to
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import DeliveryRecord, EventKind
from bot.paging.digest import Digests, Page
from bot.slack.blocks import incident as blocks
from bot.slack.gateway import SlackGateway, error_code, rate_limited
from bot.store import Store

log = logging.getLogger(__name__)

WARN_AFTER_ATTEMPTS = 3
# Sent to a person by DM (resolved to whoever holds the role as the step fires).
DIRECT_KINDS = frozenset({DeliveryKind.PAGE, DeliveryKind.FYI, DeliveryKind.REMINDER_ESCALATION})


@dataclass(frozen=True)
class Outgoing:
    channel: str
    user: str | None
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None


class Pager:
    def __init__(
        self,
        config: Config,
        store: Store,
        slack: SlackGateway,
        announcer: Announcing,
        directory: People,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.announcer = announcer
        self.directory = directory
        self.clock = clock
        # One lock per incident around editing its pages: a link edit and an ack's close.
        self._page_locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
        self._page_locks_guard = threading.Lock()
        # Pages to one person that pile up go as one message (bot/paging/digest.py).
        self.digests = Digests(config, store, slack, directory, clock, self._owe_link, self._after_sent)

    def routes(self) -> dict[DeliveryKind, Route]:
        composed = Route(self._send_composed, after_sent=self._after_sent, failing=_failing)
        plain = Route(self._send_composed, after_sent=self._after_sent)
        return {
            DeliveryKind.PAGE: Route(self._send_page, after_sent=self._after_sent, failing=_failing),
            DeliveryKind.FYI: composed,
            DeliveryKind.REMINDER_ESCALATION: plain,
            DeliveryKind.PAGED_NOTE: plain,
            DeliveryKind.SLA_BREACH: plain,
            DeliveryKind.REMINDER: plain,
            DeliveryKind.WARNING: plain,
            DeliveryKind.FIX_NUDGE: plain,
            # Each edits every page sent (or the one named): a later one of the same kind and
            # detail does all an earlier one would. A link and a close never collapse into each
            # other: they are ordered by the pages' lock instead (`_send_page_link`).
            DeliveryKind.CLOSE_PAGES: Route(self._send_close_pages, edits=_pages_edited),
            DeliveryKind.PAGE_LINK: Route(self._send_page_link, edits=_pages_edited),
        }

    def _send_composed(self, delivery: DeliveryRecord, incident: Incident) -> None:
        outgoing = self._compose(delivery, incident)
        if outgoing is None:
            return
        post_delivery(
            self.store,
            self.slack,
            self.clock(),
            delivery,
            outgoing.channel,
            outgoing.text,
            outgoing.blocks,
            user=outgoing.user,
            thread_ts=outgoing.thread_ts,
        )

    def _send_page(self, delivery: DeliveryRecord, incident: Incident) -> None:
        """A page: alone, or with the others owed to the same person at once (a page digest)."""
        outgoing = self._compose(delivery, incident)
        if outgoing is None:
            return
        assert outgoing.user is not None  # a page goes to one person's DM
        self.digests.send(delivery, incident, Page(outgoing.channel, outgoing.user, outgoing.text, outgoing.blocks))

    def _owe_link(self, delivery: DeliveryRecord, incident: Incident) -> None:
        """A page just posted, composed before the war room existed: if it exists now, its
        `page_links` edit may have run before this page was recorded as sent, so this page is
        owed its own."""
        if delivery.kind == DeliveryKind.PAGE and not incident.war_room_id:
            now = self.store.get(incident.number)
            if now is not None and now.war_room_id:
                self.store.record_firing(incident.number, page_link(delivery.id), self.clock())

    def _send_close_pages(self, delivery: DeliveryRecord, incident: Incident) -> None:
        self.close_pages(incident, stand_down=delivery.detail == "stand_down", progress=f"closed:{delivery.id}")
        self.store.finish_delivery(delivery.id, self.clock(), user=None, channel=None, ts=None)

    def _send_page_link(self, delivery: DeliveryRecord, incident: Incident) -> None:
        """The pages sent so far (or the one named in `detail`) edited to link the war room.

        Under the pages' lock, with the incident read inside it: an ack's close cannot be undone
        by an edit that read the incident before the ack (a closed page keeps no button).
        """
        only = int(delivery.detail) if delivery.detail.isdigit() else None
        with self._page_lock(incident.number):
            current = self.store.get(incident.number) or incident
            if current.war_room_id and current.is_open and current.acknowledged_at is None:
                for page in self.store.deliveries(current.number, kind=DeliveryKind.PAGE, status=DeliveryStatus.SENT):
                    if (only is None or page.id == only) and page.channel and page.ts:
                        if self.digests.members(page):
                            self.digests.render(page.channel, page.ts)  # every incident in it as it is now
                            continue
                        self.slack.update(
                            page.channel,
                            page.ts,
                            f"📟 You are paged: {blocks.fallback_text(self.config, current)}",
                            blocks.page(self.config, current, page.detail),
                        )
        self.store.finish_delivery(delivery.id, self.clock(), user=None, channel=None, ts=None)

    def _page_lock(self, number: int) -> threading.Lock:
        with self._page_locks_guard:
            return self._page_locks[number]

    def _after_sent(self, delivery: DeliveryRecord) -> None:
        """Tidy up around a message that just landed. Never raises: the message itself is sent.

        A page that landed after an ack (or the resolve) was missed by `close_pages`, which
        edits only pages already sent: it is closed here. A reminder retires the earlier ones.
        """
        try:
            incident = self.store.get(delivery.incident)
            if incident is None:
                return
            # As in `_compose`: an ack closes the escalation path's pages, not one asked for by hand.
            escalation = delivery.firing_key.startswith("page:")
            if delivery.kind == DeliveryKind.PAGE and (
                (escalation and incident.acknowledged_at) or not incident.is_open
            ):
                # A delivery of its own, so a failed edit is retried rather than lost.
                close = Delivery(DeliveryKind.CLOSE_PAGES, "incident", "stand_down" if incident.is_open else "")
                self.store.record_firing(incident.number, Firing(f"close_late:{delivery.id}", (close,)), self.clock())
            elif delivery.kind == DeliveryKind.REMINDER:
                self._retire_reminders(incident, latest=delivery.id)
                if incident.snoozed_until is not None and incident.snoozed_until > self.clock():
                    # Snoozed from this very reminder before it was recorded as sent (Slack had it,
                    # the store did not yet), so the click's own edit found nothing to edit.
                    snoozes = [e for e in self.store.timeline(incident.number) if e.kind == EventKind.SNOOZE]
                    if snoozes:
                        mark_reminder_snoozed(self.store, self.slack, incident, snoozes[-1].actor)
        except Exception:  # noqa: BLE001 - tidying up must never make a sent message look unsent
            log.warning("could not tidy up after delivery %s", delivery.id, exc_info=True)

    def _retire_reminders(self, incident: Incident, latest: int) -> None:
        """Delete the reminders before `latest`, so the channel holds one reminder, the newest.

        Each reminder is a new message (an edit would not notify the commander again); deleting
        the previous ones keeps the nagging to one message. Each deletion is recorded, so a retry
        or a restart never asks twice.
        """
        fired = self.store.fired_keys(incident.number)
        for old in self.store.deliveries(incident.number, kind=DeliveryKind.REMINDER, status=DeliveryStatus.SENT):
            key = f"reminder_deleted:{old.id}"
            if old.id >= latest or key in fired or not (old.channel and old.ts):
                continue
            try:
                self.slack.delete(old.channel, old.ts)
            except SlackApiError as exc:
                if error_code(exc) not in {"message_not_found", "cant_delete_message", "channel_not_found"}:
                    log.warning("could not delete reminder %s (%s); later", old.id, error_code(exc))
                    continue
            self.store.record_firing(incident.number, Firing(key, ()), self.clock())

    def _compose(self, delivery: DeliveryRecord, incident: Incident) -> Outgoing | None:
        """The message a delivery sends, or None when it became moot (and was cancelled)."""
        kind = DeliveryKind(delivery.kind)
        # An ack makes the escalation path's pages moot, not a page someone asked for by hand.
        escalation = kind == DeliveryKind.SLA_BREACH or (
            kind == DeliveryKind.PAGE and delivery.firing_key.startswith("page:")
        )
        moot = (escalation and incident.acknowledged_at) or not incident.is_open
        if moot or (kind == DeliveryKind.FIX_NUDGE and incident.fix_started_at):
            self.store.cancel_delivery(delivery.id, "no longer needed when it came to be sent")
            return None
        now = self.clock()
        silent_for = now - (incident.last_update_at or incident.declared_at)
        if kind in DIRECT_KINDS:
            # Resolved now, as the step fires: a schedule pages whoever is on call at this moment.
            users = self.directory.users(delivery.target, incident, now=now)
            if len(users) > 1:
                self._fan_out(delivery, users)
                return None
            user = users[0]
            if kind == DeliveryKind.PAGE:
                text = f"📟 You are paged: {blocks.fallback_text(self.config, incident)}"
                content = blocks.page(self.config, incident, delivery.detail)
            elif kind == DeliveryKind.FYI:
                text = f"FYI: {blocks.fallback_text(self.config, incident)}"
                content = blocks.fyi(self.config, incident)
            else:
                text = f"{incident.ref} has had no update for {humanize(silent_for)}"
                content = blocks.reminder_escalation(self.config, incident, silent_for)
            return Outgoing(self.slack.open_dm(user), user, text, content)
        target = self.announcer.war_room_target(incident)
        if target is None:
            raise NotPlacedYet("the incident has no announcement or war room to post in yet")
        channel, thread_ts = target
        if kind == DeliveryKind.PAGED_NOTE:
            users, problems = self.directory.resolve(delivery.target, incident, now=now)
            who = ", ".join(f"<@{u}>" for u in users) or "nobody"
            label = delivery.target if delivery.target in self.config.people else "directly"
            text = f"📟 Paged {who} ({label}, {delivery.detail})."
            if problems:
                text += f" ⚠️ Could not reach: {escape('; '.join(problems))}."
            return Outgoing(channel, None, text, None, thread_ts)
        if kind == DeliveryKind.SLA_BREACH:
            sent = self.store.deliveries(incident.number, kind=DeliveryKind.PAGE, status=DeliveryStatus.SENT)
            who = ", ".join(f"<@{u}>" for u in dict.fromkeys(d.user for d in sent if d.user)) or "nobody yet"
            text = (
                f"⚠️ *{incident.ref} is not acknowledged* after {delivery.detail} "
                f"(the {incident.severity} SLA). Paged so far: {who}. Press *Acknowledge* or `/incident ack`."
            )
            return Outgoing(channel, None, text, None, thread_ts)
        if kind == DeliveryKind.REMINDER:
            text = f"{incident.ref} has had no update for {humanize(silent_for)}"
            content = blocks.reminder(self.config, incident, int(delivery.detail or 1), silent_for)
            return Outgoing(channel, None, text, content, thread_ts)
        if kind == DeliveryKind.WARNING:
            return Outgoing(channel, None, delivery.detail, None, thread_ts)
        if kind == DeliveryKind.FIX_NUDGE:
            text = f"{incident.ref}: no fix under way after {delivery.detail}"
            return Outgoing(channel, None, text, blocks.fix_nudge(self.config, incident, delivery.detail), thread_ts)
        raise ValueError(f"the pager does not send {kind}")

    def _fan_out(self, delivery: DeliveryRecord, users: list[str]) -> None:
        """A role held by several people: one delivery each, so a retry never re-sends to the others."""
        firing = Firing(
            f"{delivery.firing_key}#{delivery.id}",
            tuple(Delivery(DeliveryKind(delivery.kind), user, delivery.detail) for user in users),
        )
        self.store.record_firing(delivery.incident, firing, self.clock())
        # The delivery loop is woken after every send and picks the new rows up at once.
        self.store.cancel_delivery(delivery.id, f"expanded to {', '.join(users)}")

    def close_pages(self, incident: Incident, *, stand_down: bool = True, progress: str | None = None) -> None:
        """Every page sent loses its button; on ack, the other paged people are told to stand down.

        A page still being sent is closed by its sender once it lands (see `_after_sent`). Raises
        when a page could not be closed, after trying the others: the caller's delivery is then
        retried (closing again is harmless, and each stand-down is sent once).
        """
        failed = []
        # With `progress`, each page closed is recorded under it, so a retry of the same delivery
        # edits only the pages still open: closing two pages otherwise fails whenever either edit
        # meets a fault, and a struggling Slack pushed the retries minutes apart.
        done = self.store.fired_keys(incident.number) if progress else set()
        with self._page_lock(incident.number):
            for page in self.store.deliveries(incident.number, kind=DeliveryKind.PAGE, status=DeliveryStatus.SENT):
                key = f"{progress}:{page.id}"
                if page.channel and page.ts and key not in done:
                    try:
                        self._close_page(page, incident, stand_down=stand_down)
                        if progress:
                            self.store.record_firing(incident.number, Firing(key, ()), self.clock())
                    except Exception as exc:  # noqa: BLE001 - one page that cannot be closed must not stop the others
                        if isinstance(exc, SlackApiError) and rate_limited(exc):
                            raise  # the rest wait out Slack's Retry-After with the delivery
                        log.warning("could not close the page %s of %s: %s", page.id, incident.ref, exc)
                        failed.append(page.id)
        if failed:
            raise Undeliverable(f"could not close pages {failed} of {incident.ref}")

    def _close_page(self, page: DeliveryRecord, incident: Incident, *, stand_down: bool) -> None:
        assert page.channel and page.ts
        if self.digests.members(page):
            # One section of a digest closes; the other incidents in it keep theirs as they are.
            self.digests.render(page.channel, page.ts)
        else:
            self.slack.update(
                page.channel,
                page.ts,
                f"{incident.ref} acknowledged",
                blocks.page_closed(self.config, incident),
            )
        acker = incident.acknowledged_by
        if stand_down and acker and page.user != acker:
            # Both the ack and the page's own sender may close it: one stand-down each page,
            # a delivery of its own so a crash after the edit does not lose it.
            text = f"✅ {incident.ref} was acknowledged by {pagerduty.person(acker)}. You can stand down."
            self.store.record_firing(
                incident.number, post_to(f"stand_down:{page.id}", page.channel, page.ts, text), self.clock()
            )


def _pages_edited(delivery: DeliveryRecord, incident: Incident) -> str:
    """Which pages a link or close edits: all sent (and how), or the one in `detail`."""
    return f"pages:{delivery.detail}"


def _failing(delivery: DeliveryRecord, attempts: int, reason: str) -> str | None:
    """A page or an FYI that keeps failing is said in the war room after a few tries."""
    if attempts != WARN_AFTER_ATTEMPTS:
        return None
    return (
        f"⚠️ Could not {delivery.kind} {delivery.target} after {attempts} tries (`{reason}`). "
        "Still trying; page them another way if this is urgent."
    )


def mark_reminder_snoozed(store: Store, slack: SlackGateway, incident: Incident, by: str) -> None:
    """The reminder on screen says it was snoozed, by whom and until when (no buttons left)."""
    previous = store.deliveries(incident.number, kind=DeliveryKind.REMINDER, status=DeliveryStatus.SENT)
    if not previous or not (previous[-1].channel and previous[-1].ts) or incident.snoozed_until is None:
        return
    text = f"😴 Update reminders for {incident.ref} snoozed by <@{by}> until {incident.snoozed_until:%H:%M} UTC."
    slack.update(previous[-1].channel, previous[-1].ts, text, [blocks.section(text)])
