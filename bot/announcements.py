"""Putting an incident into Slack and keeping it current: the announcement, its thread, the war room.

Everything here is idempotent and driven by what the store says is already done, so it can be
re-run after a crash or a failed Slack call: an announcement already posted is edited, not
posted again; a war room already created is reused.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.config import Config
from bot.incidents import Incident, war_room_name
from bot.slack import SlackGateway, error_code
from bot.store import Store

log = logging.getLogger(__name__)


class Announcer:
    def __init__(
        self, config: Config, store: Store, slack: SlackGateway, clock: Callable[[], datetime]
    ) -> None:
        self.config = config
        self.store = store
        self.slack = slack
        self.clock = clock
        # One lock per incident: two edits racing must not leave the older state on screen.
        self._locks: defaultdict[int, threading.Lock] = defaultdict(threading.Lock)

    def _incident(self, number: int) -> Incident:
        incident = self.store.get(number)
        if incident is None:
            raise KeyError(f"INC-{number} does not exist")
        return incident

    def setup(self, number: int) -> Incident:
        """Post the announcement and, for war-room severities, open and brief the war room."""
        with self._locks[number]:
            incident = self._incident(number)
            if incident.announcement_ts is None:
                incident = self._post_announcement(incident)
            if self.config.has_war_room(incident.severity) and incident.is_open:
                if incident.war_room_id is None:
                    incident = self._create_war_room(incident)
                if not incident.war_room_briefed:
                    incident = self._brief_war_room(incident)
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

    def in_thread(
        self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None
    ) -> None:
        """A detail line under the announcement, where followers of the incident see it."""
        if incident.announcement_ts and incident.announcement_channel:
            self.slack.post(
                incident.announcement_channel, text, blocks_, thread_ts=incident.announcement_ts
            )

    def in_war_room(
        self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None
    ) -> None:
        """Post to the war room, or under the announcement for severities without one."""
        if incident.war_room_id:
            self.slack.post(incident.war_room_id, text, blocks_)
        else:
            self.in_thread(incident, text, blocks_)

    def everywhere(
        self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None
    ) -> None:
        """Both the war room and the announcement thread (updates, all-clear)."""
        if incident.war_room_id:
            self.slack.post(incident.war_room_id, text, blocks_)
        self.in_thread(incident, text, blocks_)

    def _post_announcement(self, incident: Incident) -> Incident:
        now = self.clock()
        try:
            channel, ts = self.slack.post(
                self.config.channel,
                blocks.fallback_text(self.config, incident),
                blocks.announcement(self.config, incident, now),
            )
        except SlackApiError as exc:
            if error_code(exc) == "not_in_channel":
                raise AnnouncementChannelError(
                    f"I am not a member of #{self.config.channel}: invite me with `/invite @incident-bot` there."
                ) from exc
            raise
        return self.store.record_setup(
            incident.number, now, announcement_channel=channel, announcement_ts=ts
        )

    def _create_war_room(self, incident: Incident) -> Incident:
        now = self.clock()
        name = war_room_name(self.config.war_room_prefix, incident.number, incident.title)
        channel_id, channel_name = self.slack.create_channel(name)
        incident = self.store.record_setup(
            incident.number, now, war_room_id=channel_id, war_room_name=channel_name
        )
        # The announcement shows the war room link as soon as it exists.
        if incident.announcement_ts and incident.announcement_channel:
            self.slack.update(
                incident.announcement_channel,
                incident.announcement_ts,
                blocks.fallback_text(self.config, incident),
                blocks.announcement(self.config, incident, now),
            )
        return incident

    def _brief_war_room(self, incident: Incident) -> Incident:
        assert incident.war_room_id
        self.slack.set_topic(incident.war_room_id, blocks.war_room_topic(self.config, incident))
        self.slack.invite(incident.war_room_id, [incident.declared_by, incident.commander])
        self.slack.post(
            incident.war_room_id,
            f"{incident.ref} war room: first steps",
            blocks.first_steps(self.config, incident),
        )
        self.in_thread(incident, f"War room: <#{incident.war_room_id}>")
        return self.store.record_setup(incident.number, self.clock(), war_room_briefed=True)


class AnnouncementChannelError(Exception):
    """The announcement channel cannot be posted to; the message says what a person must do."""
