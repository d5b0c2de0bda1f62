"""Pages to one person in a storm: one DM message for the pages owed at once (a page digest).

Slack posts about one message a second into a channel after a short burst, and a person's DM is
one channel: 32 incidents paging the same primary would have the 32nd page wait half a minute.
So the pages to one person go one sender at a time (per DM channel, in this process), and the
sender whose turn it is takes every escalation page owed to that person by the time Slack's
token for that DM comes: those whose senders wait behind it (`_Queued`) and those still pending in
the store (claimed there, as their own sender would). The first page of a run goes alone, at
once, when the DM has a token for it, as before; the pages owed after it go as one message, each incident its own section with its own **Acknowledge**
button (`blocks.page_digest`).

Each page stays its own delivery row: all are stored with the digest's channel before it is
posted and marked sent with its ts after. The post carries every row's key in its metadata, so a
crash between the post and the rows' write is found by each row's own look-up at start-up
(`find_posted`) and nothing is sent twice. A failed post leaves every row to be retried as its own
would have been (at Slack's `Retry-After`; a post in doubt not before its claim's deadline).

A digest is edited as a whole (`render`): an ack's close, the war room's link, a page landing
late all re-render it from the current state of each incident in it, under one lock per message
with the state read inside it, so one incident's ack never reopens or hides another's button.
Only escalation pages are digested: a page someone asked for by hand goes alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.context import People
from bot.core import counters
from bot.delivery.once import key, post_delivery
from bot.domain.deliveries import RATELIMITED, DeliveryKind
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.domain.records import DeliveryRecord
from bot.slack.blocks import incident as blocks
from bot.slack.gateway import DeadlinePassed, SlackGateway, error_code, in_doubt, rate_limited, retry_after_s
from bot.slack.pacing import Saturated
from bot.store import Store

log = logging.getLogger(__name__)

# The longest the sender whose turn it is waits for the DM's token before gathering (Slack gives
# one about every second after its burst); a longer wait is the pacer's, which defers the row.
GATHER_WAIT_MAX_S = 1.5
RETRY_SOON = timedelta(seconds=0.5)
# A page handed to another sender goes in its digest only while its own claim leaves this much
# room (two client timeouts, as for any post); else it is put back to be sent on its own.
HANDED_ROOM = timedelta(seconds=20)


def escalation(delivery: DeliveryRecord) -> bool:
    """A page of the escalation path (digested), not one asked for by hand (always alone)."""
    return delivery.kind == DeliveryKind.PAGE and delivery.firing_key.startswith("page:")


@dataclass(frozen=True)
class Page:
    """What one page says, as its sender composed it."""

    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None


@dataclass
class _Queued:
    """A page handed to the sender whose turn it is for its person (its own sender has returned)."""

    delivery: DeliveryRecord
    incident: Incident
    page: Page


@dataclass
class _Person:
    """One DM channel's pages being sent by this process: one sender at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    busy: bool = False
    queued: dict[int, _Queued] = field(default_factory=dict)


class Digests:
    def __init__(
        self,
        config: Config,
        store: Store,
        slack: SlackGateway,
        directory: People,
        clock: Callable[[], datetime],
        landed: Callable[[DeliveryRecord, Incident], None],
        after_sent: Callable[[DeliveryRecord], None],
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.directory = directory
        self.clock = clock
        self._landed = landed  # every page just posted, alone or in a digest (the war-room link check)
        self._after_sent = after_sent  # the rows sent by a sender other than their own
        self._people: dict[str, _Person] = {}
        self._guard = threading.Lock()
        self._render_locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    # -- sending ----------------------------------------------------------------------------

    def send(self, delivery: DeliveryRecord, incident: Incident, page: Page) -> None:
        """Send `delivery` (claimed by this thread's dispatcher): alone or in a digest this
        thread posts, or, while another sender has this person's turn, handed to it (then this
        returns at once and that sender records it). Raises what this thread's own post met."""
        person = self._person(page.channel)
        with person.lock:
            if person.busy:
                person.queued[delivery.id] = _Queued(delivery, incident, page)
                return
            person.busy = True
        try:
            # The first page of a run goes alone when the DM has a token for it now.
            self._turn(person, _Queued(delivery, incident, page), own=True, first_of_run=True)
            while True:  # pages handed over meanwhile, the oldest first
                with person.lock:
                    if not person.queued:
                        person.busy = False
                        return
                    handed = person.queued.pop(min(person.queued))
                self._turn(person, handed, own=False)
        except BaseException as exc:
            with person.lock:
                left, person.queued = list(person.queued.values()), {}
                person.busy = False
            for queued in left:
                self._release(queued.delivery, exc, doubt=False)  # never posted
            raise

    def _person(self, channel: str) -> _Person:
        with self._guard:
            return self._people.setdefault(channel, _Person())

    def _turn(self, person: _Person, first: _Queued, *, own: bool, first_of_run: bool = False) -> None:
        """One message to this person: `first` and whatever else is owed to them by the time the
        DM's token comes. `own`: `first` is this thread's own row (its dispatcher records it and
        hears its failure); the others' are recorded, or put back, here."""
        if not own and not self._time_left(first.delivery):
            self._release(first.delivery, DeadlinePassed("handed over too close to its deadline"), doubt=False)
            return
        wait = self.slack.pacing_wait("chat.postMessage", first.page.channel)
        gather = not first_of_run or wait > 0
        if 0 < wait <= GATHER_WAIT_MAX_S:
            time.sleep(wait)  # the DM's token comes then: what is owed to this person by then goes with it
        handed: list[_Queued] = []
        if gather and escalation(first.delivery):
            with person.lock:
                waiting = sorted(person.queued.values(), key=lambda q: q.delivery.id)
                handed = [q for q in waiting if escalation(q.delivery)][: blocks.DIGEST_MAX - 1]
                for queued in handed:
                    del person.queued[queued.delivery.id]
        others: list[tuple[DeliveryRecord, Incident]] = []
        for queued in handed:
            if self._time_left(queued.delivery):
                others.append((queued.delivery, queued.incident))
            else:
                self._release(queued.delivery, DeadlinePassed("handed over too close to its deadline"), doubt=False)
        mine = [] if own else [(first.delivery, first.incident)]  # the rows recorded here
        try:
            if gather and escalation(first.delivery):
                skip = {first.delivery.id, *(row.id for row, _ in others)}
                others += self._claim_owed(first.delivery, first.page.user, skip, blocks.DIGEST_MAX - 1 - len(others))
            if not others:
                page = first.page
                post_delivery(
                    self.store,
                    self.slack,
                    self.clock(),
                    first.delivery,
                    page.channel,
                    page.text,
                    page.blocks,
                    user=page.user,
                )
            else:
                self._post_digest([(first.delivery, first.incident), *others], first.page)
        except BaseException as exc:
            doubt = in_doubt()
            for row, _ in mine + others:
                self._release(row, exc, doubt)
            if own:
                raise
            log.warning("a page digest for %s failed: %s", first.page.user, exc)
            return
        for row, incident in [(first.delivery, first.incident), *others]:
            self._landed(row, incident)
        for row, _ in mine + others:
            sent = next((d for d in self.store.deliveries(row.incident, row.kind, "sent") if d.id == row.id), None)
            if sent is not None:
                counters.DELIVERIES_SENT.labels(row.kind).inc()
                self._after_sent(sent)

    def _time_left(self, row: DeliveryRecord) -> bool:
        """Whether a page handed over still has the room its claim needs for a post."""
        _, until = self.store.delivery_claim(row.id)
        return until is None or until - self.clock() >= HANDED_ROOM

    def _claim_owed(
        self, mine: DeliveryRecord, user: str, skip: set[int], room: int
    ) -> list[tuple[DeliveryRecord, Incident]]:
        """The other escalation pages owed to `user` now, pending in the store, claimed for this
        send as their own sender would (same holder, same deadline)."""
        if room <= 0:
            return []
        holder, until = self.store.delivery_claim(mine.id)
        now = self.clock()
        out: list[tuple[DeliveryRecord, Incident]] = []
        for row in self.store.urgent_due_deliveries(now, [DeliveryKind.PAGE]):
            if len(out) >= room:
                break
            if row.id in skip or not escalation(row):
                continue
            incident = self.store.get(row.incident)
            if incident is None or not incident.is_open or incident.acknowledged_at is not None:
                continue  # moot: its own sender cancels it
            try:
                users = self.directory.users(row.target, incident, now=now)
            except Exception:  # noqa: BLE001 - its own sender will say what is wrong with it
                continue
            if users != [user]:
                continue
            if self.store.start_delivery(row.id, now, holder=holder or "", until=until):
                out.append((row, incident))
        return out

    def _post_digest(self, rows: list[tuple[DeliveryRecord, Incident]], page: Page) -> None:
        for row, _ in rows:
            # Where it goes, before posting: start-up asks Slack there whether the digest landed.
            self.store.set_delivery_channel(row.id, page.channel, page.user)
        incidents = [incident for _, incident in rows]
        content = blocks.page_digest(self.config, [(incident, row.detail, False) for row, incident in rows])
        posted, ts = self.slack.post(
            page.channel,
            blocks.page_digest_text(incidents),
            content,
            key=key(rows[0][0]),
            also=[key(row) for row, _ in rows[1:]],
        )
        now = self.clock()
        for row, _ in rows:
            self.store.finish_delivery(row.id, now, user=page.user, channel=posted, ts=ts)
        log.info("paged %s for %s in one message", page.user, ", ".join(i.ref for i in incidents))

    def _release(self, row: DeliveryRecord, exc: BaseException, doubt: bool) -> None:
        """A page claimed from the store for a digest whose post failed: retried as its own sender
        would have (nothing was posted unless the post is in doubt)."""
        _, until = self.store.delivery_claim(row.id)
        now = self.clock()
        try:
            if isinstance(exc, Saturated):
                self.store.defer_delivery(row.id, now + timedelta(seconds=exc.after), claim=until)
            elif isinstance(exc, SlackApiError) and rate_limited(exc):
                after = retry_after_s(getattr(exc.response, "headers", None))
                self.store.retry_delivery(row.id, RATELIMITED, now + timedelta(seconds=after or 1.0), claim=until)
            elif doubt and until is not None:
                self.store.retry_delivery(row.id, f"in a page digest in doubt: {exc}", until, claim=until)
            else:
                reason = error_code(exc) if isinstance(exc, SlackApiError) else str(exc) or type(exc).__name__
                self.store.retry_delivery(row.id, reason, now + RETRY_SOON, claim=until)
        except Exception:  # noqa: BLE001 - left `sending`: the delivery loop looks it up after its deadline
            log.warning("could not put page %s back after a failed digest", row.id, exc_info=True)

    # -- editing ------------------------------------------------------------------------------

    def members(self, page: DeliveryRecord) -> list[DeliveryRecord]:
        """The pages sharing `page`'s message when it is a digest (several), else none."""
        if not (page.channel and page.ts):
            return []
        rows = self.store.pages_in_message(page.channel, page.ts)
        return rows if len(rows) > 1 else []

    def render(self, channel: str, ts: str) -> None:
        """Edit a digest to show each of its incidents as the store has it now: open ones with
        their button (and war room), acknowledged or resolved ones closed."""
        with self._render_lock(channel, ts):
            pages: list[tuple[Incident, str, bool]] = []
            for row in self.store.pages_in_message(channel, ts):
                incident = self.store.get(row.incident)
                if incident is not None:
                    closed = not incident.is_open or incident.acknowledged_at is not None
                    pages.append((incident, row.detail, closed))
            if pages:
                text = blocks.page_digest_text([incident for incident, _, _ in pages])
                self.slack.update(channel, ts, text, blocks.page_digest(self.config, pages))

    def _render_lock(self, channel: str, ts: str) -> threading.Lock:
        with self._guard:
            return self._render_locks[(channel, ts)]
