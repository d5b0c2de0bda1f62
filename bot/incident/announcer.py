"""Putting an incident into Slack and keeping it current: the announcement, its thread, the war room.

Everything here is idempotent and driven by what the store says is already done, so it can be
re-run after a crash or a failed Slack call: an announcement already posted is edited, not
posted again; a war room already created is reused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core.steps import each
from bot.delivery.once import post_once
from bot.domain.deliveries import page_links
from bot.domain.incidents import Incident, war_room_name
from bot.domain.policy import Config
from bot.slack.blocks import incident as blocks
from bot.slack.gateway import DeadlinePassed, SlackGateway, calls_until, error_code
from bot.slack.pacing import Lane, pace
from bot.store import Store

log = logging.getLogger(__name__)

WAR_ROOM_PATIENCE = timedelta(seconds=30)
# A set-up whose war room would wait longer than this for its token makes it in a job of its own,
# queued behind the other incidents' announcements (`opening.set_up`).
WAR_ROOM_INLINE_WAIT_S = 1.0
# How long one instance's claim on an incident's set-up holds unless extended. The holder extends
# it whenever its next Slack call would not have two client timeouts left (`calls_until`), and
# makes no call once it cannot; so a claim lapses only when its holder died or froze, and the
# leader takes the set-up over then (`lapsed_setups`), looking up what was already made. The
# bot passes its sending deadline (three Slack client timeouts), as for deliveries.
SETUP_DEADLINE = timedelta(seconds=30)


class Announcer:
    def __init__(
        self,
        config: Config,
        store: Store,
        slack: SlackGateway,
        clock: Callable[[], datetime],
        instance: str = "",
        setup_deadline: timedelta = SETUP_DEADLINE,
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.clock = clock
        self.instance = instance  # the holder of the set-up claims this process makes
        self.setup_deadline = setup_deadline
        # One lock per incident: two edits racing must not leave the older state on screen.
        self._locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)
        self._channel_id: str | None = None

    def _incident(self, number: int) -> Incident:
        incident = self.store.get(number)
        if incident is None:
            raise KeyError(f"INC-{number} does not exist")
        return incident

    def needs_setup(self, incident: Incident) -> bool:
        """Whether `setup` has something left to do for this incident."""
        if incident.announcement_ts is None:
            return True
        return (
            self.config.has_war_room(incident.severity)
            and incident.is_open
            and not (incident.war_room_id and incident.war_room_briefed)
        )

    def setup(self, number: int, *, war_room: bool = True) -> Incident:
        """Post the announcement and, for war-room severities (unless `war_room` is False: the
        caller makes it later), open and brief the war room.

        Pages do not wait for any of it; once the war room exists, the pages already sent are
        owed an edit that links it (`page_links`).
        """
        with self._locks[number]:
            incident = self._incident(number)
            if not self.needs_setup(incident):
                return incident
            # In the store, not only in this process: the leader's set-up round and a standby's
            # declare must never both announce or both make a war room. The claim's holder
            # finishes; if it dies, another takes over after the deadline.
            if self._claim(number) is None:
                log.info("INC-%s: its set-up is under way on another instance", number)
                return incident
            try:
                with calls_until(
                    time.monotonic() + self.setup_deadline.total_seconds(), renew=lambda: self._claim(number)
                ):
                    done = self._set_up(number, war_room=war_room)
            except DeadlinePassed as exc:
                # Frozen or slowed past the claim, which another instance may have taken over:
                # it finishes (or the next set-up round does). Nothing more is called from here.
                log.warning("INC-%s: set-up stopped here: %s", number, exc)
                self.store.release_setup(number, self.instance)
                return self._incident(number)
            # Any other failure keeps the claim: a call that timed out may still land, so the
            # set-up is taken up again only once the claim lapses (the leader's lapsed-claim
            # look), asking Slack first, as a delivery in doubt is; not at the next minute's round.
            self.store.release_setup(number, self.instance)
            return done

    def _claim(self, number: int) -> float | None:
        """Claim (or extend) the set-up until a deadline: that deadline as a monotonic time, or
        None while another instance's claim runs or once another has taken ours over."""
        now = self.clock()
        if not self.store.claim_setup(number, self.instance, now, now + self.setup_deadline):
            return None
        return time.monotonic() + self.setup_deadline.total_seconds()

    def war_room_would_wait(self) -> bool:
        """Whether a new war room would wait its turn for Slack's conversations.create limit (Tier
        2: a few a minute) longer than `WAR_ROOM_INLINE_WAIT_S`: a storm of declares."""
        return self.slack.pacing_wait("conversations.create") > WAR_ROOM_INLINE_WAIT_S

    def _set_up(self, number: int, *, war_room: bool) -> Incident:
        incident = self._incident(number)  # as the claim found it: another may have just finished
        if incident.announcement_ts is None:
            with pace(Lane.ANNOUNCE):
                incident = self._post_announcement(incident)
        if war_room and self.config.has_war_room(incident.severity) and incident.is_open:
            with pace(Lane.SETUP):
                if incident.war_room_id is None:
                    incident = self._create_war_room(incident)
                if not incident.war_room_briefed:
                    return self._brief_war_room(incident)
        return incident

    def refresh(self, number: int) -> None:
        """Edit the announcement in place to show the incident as the store has it now."""
        with self._locks[number]:
            incident = self._incident(number)
            if incident.announcement_ts is None or incident.announcement_channel is None:
                return
            self.slack.update(
                incident.announcement_channel,
                incident.announcement_ts,
                blocks.fallback_text(self.config, incident),
                blocks.announcement(self.config, incident, self.clock()),
            )

    def in_thread(self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None) -> None:
        """A detail line under the announcement, where followers of the incident see it."""
        if incident.announcement_ts and incident.announcement_channel:
            self.slack.post(incident.announcement_channel, text, blocks_, thread_ts=incident.announcement_ts)

    def war_room_target(self, incident: Incident) -> tuple[str, str | None] | None:
        """Where war-room lines go: the war room, else the announcement's thread (channel, thread_ts)."""
        if incident.war_room_id:
            return incident.war_room_id, None
        if self.config.has_war_room(incident.severity):
            # Its war room is still being made: wait for it rather than post elsewhere, unless
            # making it has failed for a while (a workspace that forbids it): then the thread.
            attempt = self.store.attempt(f"war-room:{incident.number}")
            if attempt is None or self.clock() - attempt.at < WAR_ROOM_PATIENCE:
                return None
        if incident.announcement_ts and incident.announcement_channel:
            return incident.announcement_channel, incident.announcement_ts
        return None

    def everywhere(self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None) -> None:
        """Both the war room and the announcement thread (updates, all-clear), each on its own."""
        room = incident.war_room_id
        each(
            lambda: self.slack.post(room, text, blocks_) if room else None,
            lambda: self.in_thread(incident, text, blocks_),
        )

    def _post_announcement(self, incident: Incident) -> Incident:
        now = self.clock()

        def post() -> tuple[str, str]:
            return self.post_once(
                f"announcement:{incident.number}",
                self.config.channel,
                blocks.fallback_text(self.config, incident),
                blocks.announcement(self.config, incident, now),
                channel_id=self._announcement_channel_id(),
            )

        try:
            channel, ts = post()
        except SlackApiError as exc:
            # channel_not_found: a private channel the bot is not in is invisible to it.
            if error_code(exc) not in ("not_in_channel", "channel_not_found"):
                raise
            self._join_announcement_channel()
            channel, ts = post()
        return self.store.record_setup(incident.number, now, announcement_channel=channel, announcement_ts=ts)

    def _join_announcement_channel(self) -> None:
        """Join the announcement channel, so nobody has to `/invite` the bot before the first incident.

        A private channel cannot be joined (and is not even visible until the bot is invited):
        then a person has to invite it, and the error says so.
        """
        invite = f"invite me with `/invite @incident-bot` in #{self.config.channel}"
        channel_id = self._announcement_channel_id()
        if channel_id is None:
            raise AnnouncementChannelError(f"I cannot see #{self.config.channel} (a private channel?): {invite}.")
        try:
            self.slack.join(channel_id)
        except SlackApiError as exc:
            code = error_code(exc)
            if code == "method_not_supported_for_channel_type":
                raise AnnouncementChannelError(
                    f"#{self.config.channel} is private, so I cannot join it: {invite}."
                ) from exc
            if code in ("missing_scope", "channel_not_found", "is_archived"):
                raise AnnouncementChannelError(
                    f"I am not a member of #{self.config.channel} and could not join it (`{code}`): {invite}."
                ) from exc
            raise
        log.info("joined #%s to announce incidents there", self.config.channel)

    def _announcement_channel_id(self) -> str | None:
        """Needed to search history after a crash; learnt from earlier incidents, else looked up once."""
        if self._channel_id is None:
            self._channel_id = self.store.known_announcement_channel()
        if self._channel_id is None:
            try:
                self._channel_id = self.slack.channel_id(self.config.channel)
            except SlackApiError as exc:
                log.warning("could not look up #%s: %s", self.config.channel, error_code(exc))
        return self._channel_id

    def post_once(
        self,
        key: str,
        channel: str,
        text: str,
        blocks_: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        channel_id: str | None = None,
    ) -> tuple[str, str]:
        """Post a message that must appear once, even if the process dies mid-post."""
        return post_once(self.store, self.slack, self.clock(), key, channel, text, blocks_, thread_ts, channel_id)

    def _create_war_room(self, incident: Incident) -> Incident:
        now = self.clock()
        # An alert's incident is named after the alert's short name (its policy or alertname),
        # not the title, which carries the alert's whole summary sentence.
        alerts = self.store.alerts_of(incident.number)
        name = war_room_name(
            self.config.war_room_prefix, incident.number, alerts[0].policy if alerts else incident.title
        )
        key = f"war-room:{incident.number}"
        adopted = self._find_own_war_room(name) if self.store.attempt(key) else None
        if adopted is not None:
            channel_id, channel_name = adopted
        else:
            self.store.note_attempt(key, name, now)
            channel_id, channel_name = self.slack.create_channel(name)
        incident = self.store.record_setup(incident.number, now, war_room_id=channel_id, war_room_name=channel_name)
        # Pages went before the room existed: each is owed the room's link, and the announcement
        # is owed an edit showing it (both sent by the delivery loop, retried until Slack takes them).
        self.store.record_firing(incident.number, page_links(channel_id), now)
        return incident

    def _find_own_war_room(self, name: str) -> tuple[str, str] | None:
        """After a crash mid-create: the channel we made under this name, if it exists and is ours.

        Ours means created by this bot and not already some other incident's war room; anything
        else with the name belongs to someone else, and create_channel picks `name-2` instead.
        """
        try:
            found = self.slack.find_channel(name)
            me = self.slack.bot_user_id()
        except SlackApiError as exc:
            log.warning("could not look for an earlier %s: %s", name, error_code(exc))
            return None
        if found is None or found.get("creator") != me or found.get("is_archived"):
            return None
        if self.store.by_war_room(str(found["id"])) is not None:
            return None
        return str(found["id"]), str(found["name"])

    def _brief_war_room(self, incident: Incident) -> Incident:
        assert incident.war_room_id
        self.slack.set_topic(incident.war_room_id, blocks.war_room_topic(self.config, incident))
        # The people invited here read the briefing below: their joins are not greeted with a catch-up.
        self.store.claim_greetings(incident.number, [incident.declared_by, incident.commander], self.clock())
        self.slack.invite(incident.war_room_id, [incident.declared_by, incident.commander])
        self.post_once(
            f"brief:{incident.number}",
            incident.war_room_id,
            f"{incident.ref} war room: first steps",
            blocks.first_steps(self.config, incident),
        )
        if incident.announcement_ts and incident.announcement_channel:
            self.post_once(
                f"war-room-link:{incident.number}",
                incident.announcement_channel,
                f"War room: <#{incident.war_room_id}>",
                thread_ts=incident.announcement_ts,
            )
        return self.store.record_setup(incident.number, self.clock(), war_room_briefed=True)


class AnnouncementChannelError(Exception):
    """The announcement channel cannot be posted to; the message says what a person must do."""
