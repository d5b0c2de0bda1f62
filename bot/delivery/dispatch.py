"""Sending one delivery through the route of its kind: claimed, sent, retried, never dropped.

Every send goes in the pacer's lane of its kind (`LANES`: pages first, then announcement edits,
then thread lines and reminders), a person's incident before an alert's; a send the pacer holds
back longer than `PACED_WAIT_S` is deferred to when its token comes (not a failed attempt), so a
sender thread never sleeps out a backlog. Slack's rate limit (429, `ratelimited`) past the
client's one short retry is the dispatcher's own to handle: the row stays pending with
`last_error` RATELIMITED and is tried again exactly after Slack's `Retry-After`, never
cancelled, never earlier.

A failure that persists is said out loud in the war room (a route's `failing` says when and
how), because a silent failed page is the worst bug this bot can have. A receiver that refuses
the call itself (`Refused`) is not retried, and the war room hears why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.core import counters
from bot.delivery.errors import NotPlacedYet, Refused, RetryLater, Undeliverable, transient
from bot.delivery.once import key
from bot.domain.deliveries import NOT_PLACED_YET, RATELIMITED, DeliveryKind, DeliveryStatus, warning
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import SlackGateway, error_code, rate_limited, retry_after_s
from bot.slack.pacing import Lane, Origin, Saturated, pace
from bot.store import Store

log = logging.getLogger(__name__)

# The longest a sender thread waits for the pacer's token before deferring the delivery.
PACED_WAIT_S = 2.0

# Each kind's lane in the pacer; a kind not named goes with the thread lines (BACKGROUND).
LANES: Mapping[DeliveryKind, Lane] = {
    DeliveryKind.PAGE: Lane.PEOPLE,
    DeliveryKind.SLA_BREACH: Lane.PEOPLE,
    DeliveryKind.REFRESH: Lane.ANNOUNCE,
    DeliveryKind.CLOSE_PAGES: Lane.ANNOUNCE,
    DeliveryKind.PAGE_LINK: Lane.ANNOUNCE,
    DeliveryKind.PROPOSAL_EDIT: Lane.ANNOUNCE,
    DeliveryKind.STATUSPAGE: Lane.ANNOUNCE,
}


@dataclass(frozen=True)
class Route:
    """How one kind of delivery is sent.

    `send` sends it and records it sent (or cancels it when it became moot). The optional hooks:
    `landed` says whether a send in doubt reached Slack after all (and records it), for kinds that
    are not a post found by its key (an upload); `after_sent` tidies up around a message that just
    landed and never raises; `may_go` says whether it is its turn (status page calls go in order);
    `failing` is the war room's warning after `attempts` failed tries, or None for no warning yet.
    """

    send: Callable[[DeliveryRecord, Incident], None]
    landed: Callable[[DeliveryRecord, Incident, float], bool] | None = None
    after_sent: Callable[[DeliveryRecord], None] | None = None
    may_go: Callable[[DeliveryRecord], bool] | None = None
    failing: Callable[[DeliveryRecord, int, str], str | None] | None = None


Routes = Mapping[DeliveryKind, Route]
_KINDS = frozenset(DeliveryKind)


class Dispatcher:
    """The one way a delivery row is sent, whatever its kind (the delivery loop calls it)."""

    def __init__(
        self,
        store: Store,
        slack: SlackGateway,
        clock: Callable[[], datetime],
        routes: Routes,
        retry_base: timedelta = timedelta(seconds=5),
        retry_max: timedelta = timedelta(minutes=5),
    ) -> None:
        self.store = store
        self.slack = slack
        self.clock = clock
        self.routes = dict(routes)
        self.retry_base = retry_base
        self.retry_max = retry_max

    def route(self, delivery: DeliveryRecord) -> Route:
        try:
            return self.routes[DeliveryKind(delivery.kind)]
        except (KeyError, ValueError):
            raise ValueError(f"no route for delivery kind {delivery.kind!r}") from None

    def may_go(self, delivery: DeliveryRecord) -> bool:
        """Whether the delivery may be sent now (it is due; some kinds also wait their turn)."""
        may_go = self.route(delivery).may_go
        return may_go is None or may_go(delivery)

    def send(self, delivery: DeliveryRecord) -> None:
        self._send(delivery)

    def _lane(self, delivery: DeliveryRecord, incident: Incident) -> AbstractContextManager[None]:
        """The pacer's lane for this send: by kind, and a person's incident before an alert's."""
        try:
            origin = Origin.ALERT if incident.declared_by == self.slack.bot_user_id() else Origin.PERSON
        except Exception:  # noqa: BLE001 - who declared it only orders the queue
            origin = Origin.PERSON
        lane = LANES.get(DeliveryKind(delivery.kind), Lane.BACKGROUND) if delivery.kind in _KINDS else Lane.BACKGROUND
        return pace(lane, origin, max_wait_s=PACED_WAIT_S)

    def _send(self, delivery: DeliveryRecord) -> None:
        if not self.store.start_delivery(delivery.id, self.clock()):
            return  # another thread has it
        incident = self.store.get(delivery.incident)
        if incident is None:
            self.store.cancel_delivery(delivery.id, "incident gone")
            return
        try:
            # A failed attempt that got as far as Slack (a timeout, a dropped answer) may have
            # landed all the same: ask Slack before sending it again.
            with self._lane(delivery, incident):
                if delivery.attempts and delivery.channel and self._landed(delivery, incident):
                    return
                self.route(delivery).send(delivery, incident)
        except Saturated as exc:
            # Held back by the bot's own pacing before it reached Slack: not a failure.
            self.store.defer_delivery(delivery.id, self.clock() + timedelta(seconds=exc.after))
        except RetryLater as exc:
            self._retry_later(delivery, incident, exc.reason, after=exc.after)
        except NotPlacedYet as exc:
            self._retry_later(delivery, incident, f"{NOT_PLACED_YET} {exc}")
        except Refused as exc:
            self._refused(delivery, incident, exc)
        except (SlackApiError, Undeliverable, OSError) as exc:
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                # Slack said when: exactly then, not the backoff (and not sooner).
                after = retry_after_s(getattr(exc.response, "headers", None))
                self._retry_later(delivery, incident, RATELIMITED, after=after if after is not None else 1.0)
            else:
                reason = f"{error_code(exc)}" if isinstance(exc, SlackApiError) else str(exc)
                self._retry_later(delivery, incident, reason)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the page: keep it pending
            log.exception("delivery %s of INC-%s failed", delivery.id, delivery.incident)
            self._retry_later(delivery, incident, type(exc).__name__)
        else:
            # Read back from the store: a delivery that turned out not to be needed is not "sent".
            sent = self._sent(delivery)
            if sent is not None:
                counters.DELIVERIES_SENT.labels(delivery.kind).inc()
                self._after_sent(sent)

    def _sent(self, delivery: DeliveryRecord) -> DeliveryRecord | None:
        sent = self.store.deliveries(delivery.incident, delivery.kind, DeliveryStatus.SENT)
        return next((d for d in sent if d.id == delivery.id), None)

    def _after_sent(self, delivery: DeliveryRecord) -> None:
        after_sent = self.route(delivery).after_sent
        if after_sent is not None:
            after_sent(delivery)

    def recover_interrupted(self) -> None:
        """Deliveries a crash caught mid-send: sent if Slack has them, else sent again."""
        for delivery in self.store.interrupted_deliveries():
            self.recover(delivery)

    def recover(self, delivery: DeliveryRecord) -> None:
        """One delivery left `sending` (a crash, or a store write that failed after the post)."""
        self._recover(delivery)

    def _recover(self, delivery: DeliveryRecord) -> None:
        incident = self.store.get(delivery.incident)
        try:
            landed = incident is not None and self._landed(delivery, incident)
        except Exception as exc:  # noqa: BLE001 - Slack is struggling: look again after a backoff
            log.warning("could not check whether delivery %s landed (%s); later", delivery.id, exc)
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                after = retry_after_s(getattr(exc.response, "headers", None))
                wait = timedelta(seconds=after) if after is not None else self.retry_base
                self.store.retry_delivery(delivery.id, RATELIMITED, self.clock() + wait)
                return
            self.store.retry_delivery(
                delivery.id, f"could not check whether it landed: {exc}", self.clock() + self.retry_base
            )
            return
        if not landed:
            self.store.resume_delivery(delivery.id)

    def _landed(self, delivery: DeliveryRecord, incident: Incident) -> bool:
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
        landed = self.route(delivery).landed
        try:
            if landed is not None:
                return landed(delivery, incident, oldest.timestamp() - 1)
            ts = self.slack.find_posted(delivery.channel, key(delivery), oldest.timestamp() - 1, delivery.thread_ts)
        except SlackApiError as exc:
            if transient(exc):
                raise
            log.warning("could not check delivery %s (%s); sending it again", delivery.id, error_code(exc))
            return False
        if ts is None:
            return False
        self.store.finish_delivery(delivery.id, self.clock(), user=delivery.user, channel=delivery.channel, ts=ts)
        self._after_sent(replace(delivery, ts=ts))
        return True

    def _refused(self, delivery: DeliveryRecord, incident: Incident, refusal: Refused) -> None:
        self.store.cancel_delivery(delivery.id, refusal.reason)
        log.warning("delivery %s (%s %s) refused: %s", delivery.id, delivery.kind, delivery.target, refusal.reason)
        self.store.record_firing(incident.number, warning(f"warning:refused:{delivery.id}", refusal.say), self.clock())

    def _retry_later(
        self, delivery: DeliveryRecord, incident: Incident, reason: str, after: float | None = None
    ) -> None:
        """Try again after a backoff, or exactly when the receiver said (`Retry-After`)."""
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
        failing = self.route(delivery).failing
        text = failing(delivery, attempts, reason) if failing is not None else None
        if text is not None:
            # A delivery of its own, so the warning waits for the war room rather than getting lost.
            self.store.record_firing(incident.number, warning(f"warning:delivery:{delivery.id}", text), self.clock())
