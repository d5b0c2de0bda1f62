"""Sending what the timers decided: pages, FYIs, "who was paged" lines, SLA warnings.

Each delivery is a row in the store. It counts as sent only once Slack accepted it; until
then it is retried with backoff, across restarts, and never dropped. A failure that persists
is said out loud in the war room, because a silent failed page is the worst bug this bot can have.
Status page calls are the one exception: a call that a later one supersedes, or that
the status page refuses outright (a 4xx other than a rate limit), is cancelled, the latter aloud.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core import counters as metrics
from bot.core.durations import humanize
from bot.core.mrkdwn import escape
from bot.domain.escalation import Delivery, Firing
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.incident import followups
from bot.incident.announcer import Announcer
from bot.oncall.directory import Directory, PeopleError
from bot.review import drafts as reviews
from bot.slack.blocks import incident as blocks
from bot.slack.gateway import SlackGateway, error_code
from bot.statuspage.client import GENERIC_NAME, StatuspageClient, StatuspageError
from bot.store import DeliveryRecord, Store

log = logging.getLogger(__name__)

WARN_AFTER_ATTEMPTS = 3


@dataclass(frozen=True)
class Outgoing:
    channel: str
    user: str | None
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None


def _transient(exc: SlackApiError) -> bool:
    """A rate limit or a server error, that slack_sdk's own retries did not get past."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or status >= 500


def _key(delivery: DeliveryRecord) -> str:
    return f"delivery:{delivery.id}"


class Pager:
    def __init__(
        self,
        config: Config,
        store: Store,
        slack: SlackGateway,
        announcer: Announcer,
        directory: Directory,
        clock: Callable[[], datetime],
        retry_base: timedelta = timedelta(seconds=5),
        retry_max: timedelta = timedelta(minutes=5),
        statuspage: StatuspageClient | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.announcer = announcer
        self.directory = directory
        self.clock = clock
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.statuspage = statuspage
        # Kinds whose sending lives elsewhere (a diagnose runs Google reads): kind -> send.
        self.handlers: dict[str, Callable[[DeliveryRecord, Incident], None]] = {}

    def send(self, delivery: DeliveryRecord) -> None:
        if not self.store.start_delivery(delivery.id, self.clock()):
            return  # another thread has it
        incident = self.store.get(delivery.incident)
        if incident is None:
            self.store.cancel_delivery(delivery.id, "incident gone")
            return
        try:
            # A failed attempt that got as far as Slack (a timeout, a dropped answer) may have
            # landed all the same: ask Slack before sending it again.
            if delivery.attempts and delivery.channel and self._landed(delivery):
                return
            self._deliver(delivery, incident)
        except StatuspageError as exc:
            if exc.retryable:
                self._retry_later(delivery, incident, str(exc), after=exc.retry_after)
            else:
                self._refused(delivery, incident, str(exc))
        except (SlackApiError, PeopleError, OSError) as exc:
            reason = f"{error_code(exc)}" if isinstance(exc, SlackApiError) else str(exc)
            self._retry_later(delivery, incident, reason)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the page: keep it pending
            log.exception("delivery %s of INC-%s failed", delivery.id, delivery.incident)
            self._retry_later(delivery, incident, type(exc).__name__)
        else:
            # Counted from the store: a delivery that turned out not to be needed is not "sent".
            if any(d.id == delivery.id for d in self.store.deliveries(delivery.incident, delivery.kind, "sent")):
                metrics.DELIVERIES_SENT.labels(delivery.kind).inc()

    def _deliver(self, delivery: DeliveryRecord, incident: Incident) -> None:
        if delivery.kind == "statuspage":
            self._statuspage(delivery, incident)
            return
        if delivery.kind in followups.KINDS:
            followups.deliver(
                delivery,
                incident,
                store=self.store,
                slack=self.slack,
                announcer=self.announcer,
                close_pages=lambda current, stand_down: self.close_pages(current, stand_down=stand_down),
                now=self.clock(),
            )
            return
        if delivery.kind in self.handlers:
            self.handlers[delivery.kind](delivery, incident)
            return
        if delivery.kind in reviews.DELIVERY_KINDS:
            reviews.deliver(
                delivery,
                incident,
                config=self.config,
                store=self.store,
                slack=self.slack,
                announcer=self.announcer,
                now=self.clock(),
            )
            return
        outgoing = self._compose(delivery, incident)
        if outgoing is None:
            return
        # The channel is stored before posting, so start-up can ask Slack whether it landed.
        self.store.set_delivery_channel(delivery.id, outgoing.channel, outgoing.user, outgoing.thread_ts)
        channel, ts = self.slack.post(
            outgoing.channel, outgoing.text, outgoing.blocks, thread_ts=outgoing.thread_ts, key=_key(delivery)
        )
        self.store.finish_delivery(delivery.id, self.clock(), user=outgoing.user, channel=channel, ts=ts)
        self._after_sent(replace(delivery, user=outgoing.user, channel=channel, ts=ts))

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
            if delivery.kind == "page" and ((escalation and incident.acknowledged_at) or not incident.is_open):
                # A delivery of its own, so a failed edit is retried rather than lost.
                close = Delivery("close_pages", "incident", "stand_down" if incident.is_open else "")
                self.store.record_firing(incident.number, Firing(f"close_late:{delivery.id}", (close,)), self.clock())
            elif delivery.kind == "reminder":
                self._retire_reminders(incident, latest=delivery.id)
        except Exception:  # noqa: BLE001 - tidying up must never make a sent message look unsent
            log.warning("could not tidy up after delivery %s", delivery.id, exc_info=True)

    def _retire_reminders(self, incident: Incident, latest: int) -> None:
        """Delete the reminders before `latest`, so the channel holds one reminder, the newest.

        Each reminder is a new message (an edit would not notify the commander again); deleting
        the previous ones keeps the nagging to one message. Each deletion is recorded, so a retry
        or a restart never asks twice.
        """
        fired = self.store.fired_keys(incident.number)
        for old in self.store.deliveries(incident.number, kind="reminder", status="sent"):
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
        # An ack makes the escalation path's pages moot, not a page someone asked for by hand.
        escalation = delivery.kind == "sla_breach" or (
            delivery.kind == "page" and delivery.firing_key.startswith("page:")
        )
        moot = (escalation and incident.acknowledged_at) or not incident.is_open
        if moot or (delivery.kind == "fix_nudge" and incident.fix_started_at):
            self.store.cancel_delivery(delivery.id, "no longer needed when it came to be sent")
            return None
        now = self.clock()
        silent_for = now - (incident.last_update_at or incident.declared_at)
        if delivery.kind in {"page", "fyi", "reminder_escalation"}:
            # Resolved now, as the step fires: a schedule pages whoever is on call at this moment.
            users = self.directory.users(delivery.target, incident, now=now)
            if len(users) > 1:
                self._fan_out(delivery, users)
                return None
            user = users[0]
            if delivery.kind == "page":
                text = f"📟 You are paged: {blocks.fallback_text(self.config, incident)}"
                content = blocks.page(self.config, incident, delivery.detail)
            elif delivery.kind == "fyi":
                text = f"FYI: {blocks.fallback_text(self.config, incident)}"
                content = blocks.fyi(self.config, incident)
            else:
                text = f"{incident.ref} has had no update for {humanize(silent_for)}"
                content = blocks.reminder_escalation(self.config, incident, silent_for)
            return Outgoing(self.slack.open_dm(user), user, text, content)
        target = self.announcer.war_room_target(incident)
        if target is None:
            raise PeopleError("the incident has no announcement or war room to post in yet")
        channel, thread_ts = target
        if delivery.kind == "paged_note":
            users, problems = self.directory.resolve(delivery.target, incident, now=now)
            who = ", ".join(f"<@{u}>" for u in users) or "nobody"
            label = delivery.target if delivery.target in self.config.people else "directly"
            text = f"📟 Paged {who} ({label}, {delivery.detail})."
            if problems:
                text += f" ⚠️ Could not reach: {escape('; '.join(problems))}."
            return Outgoing(channel, None, text, None, thread_ts)
        if delivery.kind == "sla_breach":
            paged = [d.user for d in self.store.deliveries(incident.number, kind="page", status="sent") if d.user]
            who = ", ".join(f"<@{u}>" for u in dict.fromkeys(paged)) or "nobody yet"
            text = (
                f"⚠️ *{incident.ref} is not acknowledged* after {delivery.detail} "
                f"(the {incident.severity} SLA). Paged so far: {who}. Press *Acknowledge* or `/incident ack`."
            )
            return Outgoing(channel, None, text, None, thread_ts)
        if delivery.kind == "reminder":
            text = f"{incident.ref} has had no update for {humanize(silent_for)}"
            content = blocks.reminder(self.config, incident, int(delivery.detail or 1), silent_for)
            return Outgoing(channel, None, text, content, thread_ts)
        if delivery.kind == "warning":
            return Outgoing(channel, None, delivery.detail, None, thread_ts)
        if delivery.kind == "fix_nudge":
            text = f"{incident.ref}: no fix under way after {delivery.detail}"
            return Outgoing(channel, None, text, blocks.fix_nudge(self.config, incident, delivery.detail), thread_ts)
        raise ValueError(f"unknown delivery kind {delivery.kind}")

    def statuspage_turn(self, delivery: DeliveryRecord) -> bool:
        """Whether a status page call may go now: every earlier call of its incident is done.

        One call per incident at a time, in the order they were made, so the page never shows an
        older state last. An earlier update still waiting is superseded by a later update or the
        resolve, and is dropped rather than sent late.
        """
        calls = self.store.deliveries(delivery.incident, kind="statuspage")
        earlier = [d for d in calls if d.id < delivery.id and d.status in ("pending", "sending")]
        for call in earlier:
            supersedes = call.target == "update" and delivery.target in ("update", "resolve")
            if not (supersedes and self.store.drop_pending_delivery(call.id, f"superseded by delivery {delivery.id}")):
                return False
        return True

    def _statuspage(self, delivery: DeliveryRecord, incident: Incident) -> None:
        """Create, update or resolve the public incident; retried like a page when it fails."""
        if self.statuspage is None:
            self.store.cancel_delivery(delivery.id, "no status page configured")
            return
        detail = json.loads(delivery.detail or "{}")
        if delivery.target == "create":
            if incident.statuspage_id is None:
                # The name is in the delivery: the title goes public only when someone asked for it.
                page_id = self.statuspage.create_incident(
                    detail.get("name") or GENERIC_NAME,
                    "investigating",
                    detail.get("body", ""),
                    severity=incident.severity,
                )
                self.store.record_setup(incident.number, self.clock(), statuspage_id=page_id)
        else:
            if delivery.target == "update" and not incident.is_open:
                self.store.cancel_delivery(delivery.id, "the incident is resolved: the resolve has the last word")
                return
            if incident.statuspage_id is None:
                # Calls go in order, so the create is done by now: it was refused or never made.
                self.store.cancel_delivery(delivery.id, "the status page incident was never created")
                return
            if delivery.target == "resolve":
                self.statuspage.resolve_incident(incident.statuspage_id, detail.get("body", ""))
            else:
                self.statuspage.update_incident(incident.statuspage_id, detail["status"], detail.get("body", ""))
        self.store.finish_delivery(delivery.id, self.clock(), user=None, channel=None, ts=None)

    def _refused(self, delivery: DeliveryRecord, incident: Incident, reason: str) -> None:
        """The status page refused the call itself (bad key, unknown page, invalid field): the same
        call would be refused again, so it is not retried, and the war room hears why."""
        self.store.cancel_delivery(delivery.id, reason)
        log.warning("delivery %s (%s) refused: %s", delivery.id, delivery.target, reason)
        text = (
            f"⚠️ The status page refused the {delivery.target} (`{reason}`), so I will not retry it. "
            "Check `statuspage` in the config and post the status by hand."
        )
        warning = Firing(f"warning:refused:{delivery.id}", (Delivery("warning", "incident", text),))
        self.store.record_firing(incident.number, warning, self.clock())

    def mark_reminder_snoozed(self, incident: Incident, by: str) -> None:
        """The reminder on screen says it was snoozed, by whom and until when (no buttons left)."""
        previous = self.store.deliveries(incident.number, kind="reminder", status="sent")
        if not previous or not (previous[-1].channel and previous[-1].ts) or incident.snoozed_until is None:
            return
        text = f"😴 Update reminders for {incident.ref} snoozed by <@{by}> until {incident.snoozed_until:%H:%M} UTC."
        self.slack.update(previous[-1].channel, previous[-1].ts, text, [blocks.section(text)])

    def recover_interrupted(self) -> None:
        """Deliveries a crash caught mid-send: sent if Slack has them, else sent again."""
        for delivery in self.store.interrupted_deliveries():
            self.recover(delivery)

    def recover(self, delivery: DeliveryRecord) -> None:
        """One delivery left `sending` (a crash, or a store write that failed after the post)."""
        try:
            landed = self._landed(delivery)
        except Exception as exc:  # noqa: BLE001 - Slack is struggling: look again after a backoff
            log.warning("could not check whether delivery %s landed (%s); later", delivery.id, exc)
            self.store.retry_delivery(
                delivery.id, f"could not check whether it landed: {exc}", self.clock() + self.retry_base
            )
            return
        if not landed:
            self.store.resume_delivery(delivery.id)

    def _landed(self, delivery: DeliveryRecord) -> bool:
        """Whether Slack has the delivery already (then it is recorded as sent).

        Raises when Slack could not say (a timeout, a 5xx, a rate limit): sending again then
        could post twice, so the caller tries again later. A refusal (`channel_not_found`,
        `missing_scope`) means the history cannot be read: then it is sent again, since a lost
        message is worse than a repeated one.
        """
        if not delivery.channel:
            return False  # it never got as far as Slack
        # Since the attempt in doubt: after the last retry was planned, or, for a delivery being
        # retried, since before that retry's backoff began.
        oldest = delivery.next_attempt_at - (self.retry_max if delivery.attempts else timedelta(0))
        try:
            if delivery.kind == "postmortem_draft":
                incident = self.store.get(delivery.incident)
                return incident is not None and reviews.recover_upload(
                    delivery, incident, oldest.timestamp() - 1, store=self.store, slack=self.slack, now=self.clock()
                )
            ts = self.slack.find_posted(delivery.channel, _key(delivery), oldest.timestamp() - 1, delivery.thread_ts)
        except SlackApiError as exc:
            if _transient(exc):
                raise
            log.warning("could not check delivery %s (%s); sending it again", delivery.id, error_code(exc))
            return False
        if ts is None:
            return False
        self.store.finish_delivery(delivery.id, self.clock(), user=delivery.user, channel=delivery.channel, ts=ts)
        self._after_sent(replace(delivery, ts=ts))
        return True

    def _fan_out(self, delivery: DeliveryRecord, users: list[str]) -> None:
        """A role held by several people: one delivery each, so a retry never re-sends to the others."""
        firing = Firing(
            f"{delivery.firing_key}#{delivery.id}",
            tuple(Delivery(delivery.kind, user, delivery.detail) for user in users),
        )
        self.store.record_firing(delivery.incident, firing, self.clock())
        # The delivery loop is woken after every send and picks the new rows up at once.
        self.store.cancel_delivery(delivery.id, f"expanded to {', '.join(users)}")

    def _retry_later(
        self, delivery: DeliveryRecord, incident: Incident, reason: str, after: float | None = None
    ) -> None:
        """Try again after a backoff, or exactly when the server said (`Retry-After`)."""
        delay = min(self.retry_max, self.retry_base * (2 ** min(delivery.attempts, 10)))
        if after is not None:
            delay = timedelta(seconds=after)
        attempts = self.store.retry_delivery(delivery.id, reason, self.clock() + delay)
        log.warning(
            "delivery %s (%s to %s) failed: %s; retry in %s",
            delivery.id,
            delivery.kind,
            delivery.target,
            reason,
            delay,
        )
        # A status page that customers read is reported at once; pages after a few tries. The
        # warning is a delivery of its own, so it waits for the war room rather than getting lost.
        warn_at = 1 if delivery.kind == "statuspage" else WARN_AFTER_ATTEMPTS
        if attempts == warn_at and delivery.kind in {"page", "fyi", "statuspage"}:
            if delivery.kind == "statuspage":
                text = f"⚠️ The status page ({delivery.target}) failed (`{reason}`). Slack carries on; I keep retrying."
            else:
                text = (
                    f"⚠️ Could not {delivery.kind} {delivery.target} after {attempts} tries (`{reason}`). "
                    "Still trying; page them another way if this is urgent."
                )
            warning = Firing(f"warning:delivery:{delivery.id}", (Delivery("warning", "incident", text),))
            self.store.record_firing(incident.number, warning, self.clock())

    def close_pages(self, incident: Incident, *, stand_down: bool = True) -> None:
        """Every page sent loses its button; on ack, the other paged people are told to stand down.

        A page still being sent is closed by its sender once it lands (see `_after_sent`). Raises
        when a page could not be closed, after trying the others: the caller's delivery is then
        retried (closing again is harmless, and each stand-down is sent once).
        """
        failed = []
        for page in self.store.deliveries(incident.number, kind="page", status="sent"):
            if page.channel and page.ts:
                try:
                    self._close_page(page, incident, stand_down=stand_down)
                except Exception as exc:  # noqa: BLE001 - one page that cannot be closed must not stop the others
                    log.warning("could not close the page %s of %s: %s", page.id, incident.ref, exc)
                    failed.append(page.id)
        if failed:
            raise PeopleError(f"could not close pages {failed} of {incident.ref}")

    def _close_page(self, page: DeliveryRecord, incident: Incident, *, stand_down: bool) -> None:
        assert page.channel and page.ts
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
            text = f"✅ {incident.ref} was acknowledged by <@{acker}>. You can stand down."
            stand_down_post = followups.post_to(f"stand_down:{page.id}", page.channel, page.ts, text)
            self.store.record_firing(incident.number, stand_down_post, self.clock())
