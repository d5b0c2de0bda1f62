"""Sending one delivery through the route of its kind: claimed, sent, retried, never dropped.

A delivery is claimed by one instance until a sending deadline (`send_deadline`, longer than any
send the Slack client's timeout allows): no Slack call of the send starts unless it can finish
before the deadline (`calls_until`), and nobody else takes the delivery over, nor asks Slack
whether it landed, before the deadline has passed. The same rule holds for the sender itself:
a send whose outcome is in doubt (a timeout, a dropped answer, a 5xx) is looked up in Slack only
after its deadline, since a post Slack was slow to answer often lands after the client gave up.

Every send goes in the pacer's lane of its kind (`LANES`: pages first, then announcement edits,
then thread lines and reminders), a person's incident before an alert's; a send the pacer holds
back longer than `PACED_WAIT_S` is deferred to when its token comes (not a failed attempt), so a
sender thread never sleeps out a backlog. Slack's rate limit (429, `ratelimited`) past the
client's one short retry is the dispatcher's own to handle: the row stays pending with
`last_error` RATELIMITED and is tried again exactly after Slack's `Retry-After`, never
cancelled, never earlier. A send with nowhere to go yet (`NotPlacedYet`) waits with
`last_error` NOT_PLACED_YET, and set-up pulls it forward once the place exists.

Edits that pile up collapse into the latest: a route whose deliveries edit a message (`edits`
names it) has its edits of one message sent one at a time, and an edit for which a later edit of
the same message is owed (or went already) is marked superseded instead of sent, so a slow or
rate-limited Slack gets one chat.update with the latest state, not one per change. Only edits of
one kind collapse into each other: kinds that edit one message differently (a page's war-room
link and an ack's close) keep their own order (`bot.paging.pager` edits pages under one lock and
reads the incident inside it, so a closed page is never reopened by an older link edit).

Lines that pile up go as one message: plain lines (text, no buttons, never edited later; a
route's `line` says which) owed to one thread, or one channel, that are due together, or within
`LINES_WINDOW_S` of each other (the channel's bucket made them wait), are posted as one message,
joined by newlines in the order they were owed, and every row is recorded sent with its ts. The
message's metadata carries every row's key, so a crash mid-post is looked up, not posted again.
Pages, messages with buttons and messages a later delivery edits are never merged.

A failure that persists is said out loud in the war room (a route's `failing` says when and
how), because a silent failed page is the worst bug this bot can have. A receiver that refuses
the call itself (`Refused`) is not retried, and the war room hears why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError

from bot.core import counters
from bot.delivery.errors import NotPlacedYet, Refused, RetryLater, Undeliverable, transient
from bot.delivery.once import key
from bot.domain.deliveries import (
    NOT_PLACED_YET,
    RATELIMITED,
    DeliveryKind,
    DeliveryStatus,
    retry_delay,
    warning,
)
from bot.domain.incidents import Incident
from bot.domain.records import DeliveryRecord
from bot.slack.gateway import (
    Calls,
    DeadlinePassed,
    SlackGateway,
    calls_until,
    error_code,
    rate_limited,
    retry_after_s,
)
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
_KINDS = frozenset(DeliveryKind)


@dataclass(frozen=True)
class Route:
    """How one kind of delivery is sent.

    `send` sends it and records it sent (or cancels it when it became moot). The optional hooks:
    `landed` says whether a send in doubt reached Slack after all (and records it), for kinds that
    are not a post found by its key (an upload); `after_sent` tidies up around a message that just
    landed and never raises; `may_go` says whether it is its turn (status page calls go in order);
    `failing` is the war room's warning after `attempts` failed tries, or None for no warning yet.
    `line` is the delivery as a plain line (or None to send it on its own), so lines owed to one
    place at once can go as one message (see the module's docstring).
    `edits` names the message a delivery edits (a key, the same for every edit of that message),
    for edits of which the latest shows everything the earlier ones would: those that pile up
    collapse into the latest (see the module's docstring).
    """

    send: Callable[[DeliveryRecord, Incident], None]
    landed: Callable[[DeliveryRecord, Incident, float], bool] | None = None
    after_sent: Callable[[DeliveryRecord], None] | None = None
    may_go: Callable[[DeliveryRecord], bool] | None = None
    failing: Callable[[DeliveryRecord, int, str], str | None] | None = None
    edits: Callable[[DeliveryRecord, Incident], str] | None = None
    line: Callable[[DeliveryRecord, Incident], Line | None] | None = None


@dataclass(frozen=True)
class Line:
    """A plain line owed to one place (a channel, or a thread in it): text, nothing to press,
    never edited later, so it may share one message with the lines owed there at the same time."""

    channel: str
    thread_ts: str | None
    text: str


# Lines owed to one place that are due together, or within this long of each other (held back by
# the channel's bucket), go as one message; at most this many, and this long, per message.
LINES_WINDOW_S = 5.0
LINES_MAX = 20
LINES_MAX_CHARS = 3000
# The longest a sender taking lines along waits for a later line's sender to reach the place.
LINES_JOIN_S = 1.0


def _refused_once(delivery: DeliveryRecord) -> bool:
    """Its one try was refused by Slack's rate limit: nothing was carried out, nothing is in doubt."""
    return delivery.attempts == 1 and delivery.last_error == RATELIMITED


@dataclass
class _Waiting:
    """A line whose sender waits for its place's turn; `taken` once another sender took it along."""

    delivery: DeliveryRecord
    line: Line
    claim: datetime
    taken: bool = False
    carried: bool = False  # claimed by the sender that takes it along: no sender of its own


# The statuses of an edit that make an earlier edit of the same message moot: owed, under way,
# sent, or itself replaced by a still later one.
_LATER_EDIT = frozenset(
    {DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.SUPERSEDED}
)

Routes = Mapping[DeliveryKind, Route]


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
        *,
        instance: str = "",
        send_deadline: timedelta = timedelta(seconds=30),
    ) -> None:
        self.store = store
        self.slack = slack
        self.clock = clock
        self.routes = dict(routes)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.instance = instance  # who claims the deliveries this dispatcher sends
        self.send_deadline = send_deadline
        # Set while this instance must send nothing more (it lost the lease, or is stopping):
        # no further Slack call starts; the deliveries in flight are left to the deadline rule.
        self.stopping: threading.Event | None = None
        # One edit of a message at a time (by incident, kind and message), so the latest goes last.
        self._edit_locks: dict[tuple[int, str, str], threading.Lock] = {}
        self._edit_locks_guard = threading.Lock()
        # One post of lines per place at a time, and the lines waiting for their place's turn.
        self._place_locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._waiting: dict[tuple[str, str | None], dict[int, _Waiting]] = {}
        self._lines_guard = threading.Condition()  # notified as a line starts waiting for its place

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
        now = self.clock()
        until = now + self.send_deadline
        if not self.store.start_delivery(delivery.id, now, holder=self.instance, until=until):
            return  # another thread has it
        with self._calls_until(until) as calls:
            self._send_claimed(delivery, until, calls)

    def _calls_until(self, until: datetime) -> AbstractContextManager[Calls]:
        """Slack calls made in the block start only while the claim's deadline leaves room."""
        left = (until - self.clock()).total_seconds()
        return calls_until(time.monotonic() + left, self.stopping)

    def _lane(self, delivery: DeliveryRecord, incident: Incident) -> AbstractContextManager[None]:
        """The pacer's lane for this send: by kind, and a person's incident before an alert's."""
        try:
            origin = Origin.ALERT if incident.declared_by == self.slack.bot_user_id() else Origin.PERSON
        except Exception:  # noqa: BLE001 - who declared it only orders the queue
            origin = Origin.PERSON
        lane = LANES.get(DeliveryKind(delivery.kind), Lane.BACKGROUND) if delivery.kind in _KINDS else Lane.BACKGROUND
        return pace(lane, origin, max_wait_s=PACED_WAIT_S)

    def _send_claimed(self, delivery: DeliveryRecord, until: datetime, calls: Calls) -> None:
        incident = self.store.get(delivery.incident)
        if incident is None:
            self.store.cancel_delivery(delivery.id, "incident gone")
            return
        try:
            # A failed attempt that got as far as Slack (a timeout, a dropped answer) may have
            # landed all the same: ask Slack before sending it again.
            with self._lane(delivery, incident):
                if (
                    delivery.attempts
                    and delivery.channel
                    and not _refused_once(delivery)
                    and self._landed(delivery, incident)
                ):
                    return
                self._send_or_collapse(delivery, incident, until, calls)
        except Saturated as exc:
            # Held back by the bot's own pacing before it reached Slack: not a failure.
            self.store.defer_delivery(delivery.id, self.clock() + timedelta(seconds=exc.after), claim=until)
        except RetryLater as exc:
            self._retry_later(delivery, incident, exc.reason, after=exc.after, claim=until, in_doubt=calls.in_doubt)
        except NotPlacedYet as exc:
            self._retry_later(delivery, incident, f"{NOT_PLACED_YET} {exc}", claim=until, in_doubt=calls.in_doubt)
        except Refused as exc:
            self._refused(delivery, incident, exc)
        except (SlackApiError, Undeliverable, OSError, DeadlinePassed) as exc:
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                # Slack said when: exactly then, not the backoff (and not sooner). Nothing was
                # carried out, so nothing is in doubt.
                after = retry_after_s(getattr(exc.response, "headers", None))
                self._retry_later(delivery, incident, RATELIMITED, after=1.0 if after is None else after, claim=until)
                return
            # A post that timed out or met a 5xx may land all the same (`calls.in_doubt`): then
            # nobody, this sender included, asks Slack whether it did before the deadline.
            reason = f"{error_code(exc)}" if isinstance(exc, SlackApiError) else str(exc) or type(exc).__name__
            self._retry_later(delivery, incident, reason, claim=until, in_doubt=calls.in_doubt)
        except Exception as exc:  # noqa: BLE001 - a bug must not lose the page: keep it pending
            log.exception("delivery %s of INC-%s failed", delivery.id, delivery.incident)
            self._retry_later(delivery, incident, type(exc).__name__, claim=until, in_doubt=calls.in_doubt)
        else:
            # Read back from the store: a delivery that turned out not to be needed is not "sent".
            sent = self._sent(delivery)
            if sent is not None:
                counters.DELIVERIES_SENT.labels(delivery.kind).inc()
                self._after_sent(sent)

    def _send_or_collapse(self, delivery: DeliveryRecord, incident: Incident, until: datetime, calls: Calls) -> None:
        """Send the delivery; an edit only if no later edit of its message is owed or went already
        (else it is marked superseded), one edit of a message at a time; a line with the lines
        owed to its place at the same time."""
        route = self.route(delivery)
        line = route.line(delivery, incident) if route.line is not None else None
        if line is not None:
            self._send_line(delivery, incident, line, until, calls)
            return
        if route.edits is None:
            route.send(delivery, incident)
            return
        message = route.edits(delivery, incident)
        with self._edit_lock((incident.number, delivery.kind, message)):
            later = self._later_edit(delivery, incident, route.edits, message)
            if later is None:
                route.send(delivery, incident)
            elif self.store.supersede_delivery(delivery.id, later, claim=until):
                counters.DELIVERIES_SUPERSEDED.labels(delivery.kind).inc()
                log.info(
                    "delivery %s (%s) superseded by %s: edits that pile up collapse", delivery.id, delivery.kind, later
                )

    def _later_edit(
        self,
        delivery: DeliveryRecord,
        incident: Incident,
        edits: Callable[[DeliveryRecord, Incident], str],
        message: str,
    ) -> int | None:
        """The newest later edit of the same kind and message owed, under way or sent, if any
        (one recorded to go later, and not tried yet, replaces nothing before its time)."""
        now = self.clock()
        later = [
            other.id
            for other in self.store.deliveries(incident.number, delivery.kind)
            if other.id > delivery.id
            and other.status in _LATER_EDIT
            and not (other.status == DeliveryStatus.PENDING and not other.attempts and other.next_attempt_at > now)
            and edits(other, incident) == message
        ]
        return max(later) if later else None

    def _send_line(
        self, delivery: DeliveryRecord, incident: Incident, line: Line, until: datetime, calls: Calls
    ) -> None:
        """Post the line, with the lines owed to its place at the same time (those waiting for the
        place's turn here, and those pending and due within the window), as one message."""
        place = (line.channel, line.thread_ts)
        me = _Waiting(delivery, line, until)
        with self._lines_guard:
            self._waiting.setdefault(place, {})[delivery.id] = me
            self._lines_guard.notify_all()
            lock = self._place_locks.setdefault(place, threading.Lock())
        with lock:
            with self._lines_guard:
                self._waiting[place].pop(delivery.id, None)
                if me.taken:
                    return  # it went with an earlier sender's message (or was put back for a retry)
            now = self.clock()
            owed = self._owed_lines(incident, place, but=delivery.id)
            later = self._after_earlier(owed, delivery.id, now)
            if later is not None:
                # An earlier line of this place goes first (and takes this one along, in order).
                self.store.defer_delivery(delivery.id, later, claim=until)
                return
            batch = self._take_along(me, owed, place, now)
            if batch is None:  # an earlier line was taken by its own sender meanwhile: it goes first
                self.store.defer_delivery(delivery.id, now + timedelta(seconds=0.2), claim=until)
                return
            if len(batch) == 1:
                self.route(delivery).send(delivery, incident)
                return
            self._post_lines(delivery, incident, batch, calls)

    def _owed_lines(
        self, incident: Incident, place: tuple[str, str | None], but: int
    ) -> dict[int, tuple[DeliveryRecord, Line]]:
        """The incident's other lines for `place` not yet sent (pending or being sent), by id."""
        owed: dict[int, tuple[DeliveryRecord, Line]] = {}
        for other in self.store.deliveries(incident.number):
            if other.id == but or other.status not in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
                continue
            route = self.routes.get(DeliveryKind(other.kind)) if other.kind in _KINDS else None
            hook = route.line if route is not None else None
            if hook is None:
                continue
            try:
                line = hook(other, incident)
            except Exception:  # noqa: BLE001 - not placeable now: it goes on its own, later
                continue
            if line is not None and (line.channel, line.thread_ts) == place:
                owed[other.id] = (other, line)
        return owed

    def _after_earlier(self, owed: dict[int, tuple[DeliveryRecord, Line]], mine: int, now: datetime) -> datetime | None:
        """When to try again if an earlier line of the place must go first: one this instance is
        sending that is not yet waiting for the place's turn (its sender is on its way there), or
        one that cannot come along but is due within the window (then not long after it)."""
        with self._lines_guard:
            waiting = set().union(*(set(w) for w in self._waiting.values()))
        soon = now + timedelta(seconds=0.2)
        window = now + timedelta(seconds=LINES_WINDOW_S)
        for other, _ in owed.values():
            if other.id >= mine or other.id in waiting:
                continue
            if other.status == DeliveryStatus.SENDING:
                holder, until = self.store.delivery_claim(other.id)
                if (holder or "") == self.instance and until is not None and until > now:
                    return soon
            elif not self._claimable(other, now) and other.next_attempt_at <= window:
                return max(soon, other.next_attempt_at + timedelta(seconds=0.1))
        return None

    def _take_along(
        self, me: _Waiting, owed: dict[int, tuple[DeliveryRecord, Line]], place: tuple[str, str | None], now: datetime
    ) -> list[_Waiting] | None:
        """The lines that go in this message, in the order they were owed: this one, those waiting
        for the place's turn here, and pending ones due within the window (claimed now). A later
        line that cannot come along ends the message; an earlier one that another sender took
        meanwhile makes it None (nothing taken: that one goes first), so no line goes before an
        earlier one."""
        batch = [me]
        chars = len(me.line.text)
        window = now + timedelta(seconds=LINES_WINDOW_S)
        waiters: list[_Waiting] = []
        for number in sorted(owed):
            other, line = owed[number]
            if len(batch) >= LINES_MAX or chars + 1 + len(line.text) > LINES_MAX_CHARS:
                break
            waiter = self._waiter(place, other, now)
            if waiter is not None:
                waiters.append(waiter)
            elif self._claimable(other, now):
                due_by = window if other.last_error is None else now
                if self.store.start_delivery(other.id, due_by, holder=self.instance, until=me.claim):
                    waiter = _Waiting(other, line, me.claim, carried=True)
                elif number < me.delivery.id:
                    for taken in (w for w in batch if w.carried):  # claimed here just now: back to pending
                        self.store.defer_delivery(taken.delivery.id, now, claim=me.claim)
                    return None
            if waiter is not None:
                batch.append(waiter)
                chars += 1 + len(line.text)
            elif number > me.delivery.id:
                break
        with self._lines_guard:
            for waiter in waiters:
                waiter.taken = True
        return sorted(batch, key=lambda w: w.delivery.id)

    def _waiter(self, place: tuple[str, str | None], other: DeliveryRecord, now: datetime) -> _Waiting | None:
        """The line's sender if it waits for the place's turn; for a line this instance is sending
        whose sender is on its way here, a moment's wait for it (`LINES_JOIN_S`)."""
        with self._lines_guard:
            waiter = self._waiting.get(place, {}).get(other.id)
        if waiter is not None or other.status != DeliveryStatus.SENDING:
            return waiter
        holder, until = self.store.delivery_claim(other.id)
        if (holder or "") != self.instance or until is None or until <= now:
            return None
        with self._lines_guard:
            self._lines_guard.wait_for(lambda: other.id in self._waiting.get(place, {}), timeout=LINES_JOIN_S)
            return self._waiting.get(place, {}).get(other.id)

    @staticmethod
    def _claimable(other: DeliveryRecord, now: datetime) -> bool:
        """A pending line that may come along: never one tried in doubt (that one is looked up
        first, on its own; one whose only try Slack refused with a rate limit is not in doubt),
        and due, or only held back by the bot's own pacing for a moment."""
        if other.status != DeliveryStatus.PENDING:
            return False
        if other.attempts and other.channel and not _refused_once(other):
            return False
        return other.last_error is None or other.next_attempt_at <= now

    def _post_lines(self, delivery: DeliveryRecord, incident: Incident, batch: list[_Waiting], calls: Calls) -> None:
        """One message for the batch's lines, under every row's key; each row recorded sent with
        its ts. On failure, the other rows go back to wait as this one does (the caller's)."""
        channel, thread_ts = batch[0].line.channel, batch[0].line.thread_ts
        for waiting in batch:
            self.store.set_delivery_channel(waiting.delivery.id, channel, None, thread_ts)
        others = [w for w in batch if w.delivery.id != delivery.id]
        try:
            posted, ts = self.slack.post(
                channel,
                "\n".join(w.line.text for w in batch),
                None,
                thread_ts=thread_ts,
                key=key(delivery),
                also=[key(w.delivery) for w in others],
            )
        except Saturated as exc:
            for waiting in others:
                self.store.defer_delivery(
                    waiting.delivery.id, self.clock() + timedelta(seconds=exc.after), claim=waiting.claim
                )
            raise
        except Exception as exc:
            after = None
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                after = retry_after_s(getattr(exc.response, "headers", None)) or 1.0
            reason = RATELIMITED if after is not None else f"sent with delivery {delivery.id}: {exc}"
            for waiting in others:
                self._retry_later(
                    waiting.delivery, incident, reason, after=after, claim=waiting.claim, in_doubt=calls.in_doubt
                )
            raise
        now = self.clock()
        for waiting in batch:
            self.store.finish_delivery(waiting.delivery.id, now, user=None, channel=posted, ts=ts)
        for waiting in others:
            counters.DELIVERIES_MERGED.labels(waiting.delivery.kind).inc()
            if waiting.carried:  # a row waiting here is counted by its own sender, as it returns
                counters.DELIVERIES_SENT.labels(waiting.delivery.kind).inc()
                self._after_sent(replace(waiting.delivery, status=DeliveryStatus.SENT, channel=posted, ts=ts))
        log.info("%d lines owed to %s went as one message (%s)", len(batch), channel, ts)

    def _edit_lock(self, key: tuple[int, str, str]) -> threading.Lock:
        with self._edit_locks_guard:
            lock = self._edit_locks.get(key)
            if lock is None:
                lock = self._edit_locks[key] = threading.Lock()
            return lock

    def _sent(self, delivery: DeliveryRecord) -> DeliveryRecord | None:
        sent = self.store.deliveries(delivery.incident, delivery.kind, DeliveryStatus.SENT)
        return next((d for d in sent if d.id == delivery.id), None)

    def _after_sent(self, delivery: DeliveryRecord) -> None:
        after_sent = self.route(delivery).after_sent
        if after_sent is not None:
            after_sent(delivery)

    def recover_interrupted(self) -> None:
        """At start-up, deliveries left `sending`: sent if Slack has them, else sent again.

        On PostgreSQL, those whose sending deadline still runs are left until it passes (their
        sender may be alive, frozen or slow: the delivery loop takes them over then). On SQLite
        there is one process: a claim of another holder is a dead predecessor's, taken over now."""
        dead_predecessors = self.store.dialect == "sqlite"
        for delivery in self.store.interrupted_deliveries(None if dead_predecessors else self.clock()):
            self.recover(delivery, dead_holder=dead_predecessors)

    def recover(self, delivery: DeliveryRecord, *, dead_holder: bool = False) -> None:
        """One delivery left `sending` (a crash, or a store write that failed after the post),
        taken over once its sending deadline has passed (at once with `dead_holder`, unless it is
        this instance's own), and looked up in Slack before sending."""
        now = self.clock()
        until = now + self.send_deadline
        if not self.store.take_over_delivery(
            delivery.id, now, holder=self.instance, until=until, dead_holder=dead_holder
        ):
            return  # its sender's deadline still runs, or another instance has taken it over
        incident = self.store.get(delivery.incident)
        try:
            with self._calls_until(until):
                landed = incident is not None and self._landed(delivery, incident)
        except Exception as exc:  # noqa: BLE001 - Slack is struggling: look again after a backoff
            log.warning("could not check whether delivery %s landed (%s); later", delivery.id, exc)
            if isinstance(exc, SlackApiError) and rate_limited(exc):
                after = retry_after_s(getattr(exc.response, "headers", None))
                wait = timedelta(seconds=after) if after is not None else self.retry_base
                self.store.retry_delivery(delivery.id, RATELIMITED, self.clock() + wait, claim=until)
                return
            self.store.retry_delivery(
                delivery.id, f"could not check whether it landed: {exc}", self.clock() + self.retry_base, claim=until
            )
            return
        if not landed:
            self.store.resume_delivery(delivery.id, claim=until)

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
        # A send in doubt is retried at its deadline at the earliest: its post may be that much older.
        oldest = delivery.next_attempt_at - (self.retry_max + self.send_deadline if delivery.attempts else timedelta(0))
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
        self,
        delivery: DeliveryRecord,
        incident: Incident,
        reason: str,
        after: float | None = None,
        *,
        claim: datetime | None = None,
        in_doubt: bool = False,
    ) -> None:
        """Try again after a backoff, or exactly when the receiver said (`Retry-After`); a send
        whose outcome is in doubt not before its claim's deadline (`claim`)."""
        delay = retry_delay(delivery.kind, delivery.attempts, self.retry_base, self.retry_max)
        if after is not None:
            delay = timedelta(seconds=after)
        at = self.clock() + delay
        if in_doubt and claim is not None:
            at = max(at, claim)
        attempts = self.store.retry_delivery(delivery.id, reason, at, claim=claim)
        if not attempts:
            log.warning("delivery %s was taken over after its deadline; its late failure changes nothing", delivery.id)
            return
        log.warning(
            "delivery %s (%s to %s) failed: %s; retry at %s",
            delivery.id,
            delivery.kind,
            delivery.target,
            reason,
            at.isoformat(timespec="seconds"),
        )
        failing = self.route(delivery).failing
        text = failing(delivery, attempts, reason) if failing is not None else None
        if text is not None:
            # A delivery of its own, so the warning waits for the war room rather than getting lost.
            self.store.record_firing(incident.number, warning(f"warning:delivery:{delivery.id}", text), self.clock())
