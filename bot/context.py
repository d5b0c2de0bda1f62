"""What every command handler gets: the bot's services, the parsed request, and the reply type.

`Context` sits below every feature: the collaborators that features implement (the announcer,
the directory of people, the timers) are typed by the small ports below, so a command or a
feature reaches another feature only through one of them, never by importing it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from bot.core.errors import UsageError
from bot.core.executors import BoundedExecutor
from bot.domain.incidents import Incident
from bot.domain.policy import Config, PagerDutyConfig
from bot.domain.schedules import OnCall
from bot.google.cloud import CloudSources
from bot.pagerduty.client import PagerDutyClient
from bot.slack.gateway import SlackGateway
from bot.statuspage.client import StatuspageClient
from bot.store import Store


class Announcing(Protocol):
    """Putting an incident into Slack and keeping it current (`bot.incident.announcer`)."""

    def setup(self, number: int, *, war_room: bool = True) -> Incident: ...

    def needs_setup(self, incident: Incident) -> bool: ...

    def war_room_would_wait(self) -> bool: ...

    def refresh(self, number: int) -> None: ...

    def in_thread(self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None) -> None: ...

    def everywhere(self, incident: Incident, text: str, blocks_: list[dict[str, Any]] | None = None) -> None: ...

    def war_room_target(self, incident: Incident) -> tuple[str, str | None] | None: ...

    def post_once(
        self,
        key: str,
        channel: str,
        text: str,
        blocks_: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        channel_id: str | None = None,
    ) -> tuple[str, str]: ...


class People(Protocol):
    """Who a name in the config means, at an instant (`bot.oncall.directory`)."""

    def users(self, ref: str, incident: Incident | None = None, now: datetime | None = None) -> list[str]: ...

    def resolve(
        self, ref: str, incident: Incident | None = None, now: datetime | None = None
    ) -> tuple[list[str], list[str]]: ...

    def on_call(self, schedule: str, now: datetime) -> OnCall | None: ...

    def schedule_members(self, schedule: str) -> list[str]: ...

    def cached_only(self) -> AbstractContextManager[None]:
        """Within it, in this thread, look-ups are answered from caches, never by Slack."""
        ...


class Timing(Protocol):
    """The timers, a cache of the store's due times (`bot.paging.timers`)."""

    def replan(self, number: int) -> None: ...

    def tick_at(self, number: int, at: datetime) -> None: ...

    def wake_deliveries(self) -> None: ...

    def place(self, key: str, run: Callable[[], None], at: datetime) -> None: ...


@dataclass
class Context:
    config: Config
    store: Store
    slack: SlackGateway
    clock: Callable[[], datetime]
    work: Executor  # what people started: set-ups, diagnoses, proposals, confirmations
    alert_work: BoundedExecutor  # the alert intake's own, bounded (the webhook answers 503 when full)
    announcer: Announcing
    directory: People
    timers: Timing
    cloud: CloudSources
    statuspage: StatuspageClient | None = None  # None: no status page configured
    pagerduty: PagerDutyClient | None = None  # None: no PagerDuty configured (or no routing key)
    instance: str = ""  # this process's name: the executor a confirmed change records

    def now(self) -> datetime:
        return self.clock()

    @property
    def paging_out(self) -> PagerDutyConfig | None:
        """The `pagerduty:` config when events can be sent (a routing key is set), else None."""
        return self.config.pagerduty if self.pagerduty is not None else None


@dataclass(frozen=True)
class Reply:
    """What the user sees at once (the ack), and slow work to run after the ack.

    `after` runs on the work executor; if it returns a Reply, that is sent through the
    request's response_url (ephemeral unless `in_channel`).
    """

    text: str
    blocks: list[dict[str, Any]] | None = None
    in_channel: bool = False
    after: Callable[[], Reply | None] | None = None

    @classmethod
    def ephemeral(cls, text: str, **kwargs: Any) -> Reply:
        return cls(text=text, **kwargs)


@dataclass(frozen=True)
class CommandRequest:
    verb: str
    args: str
    user: str
    channel: str
    usage: str
    incident: Incident | None = None
    incident_error: str | None = None
    trigger_id: str | None = None
    request_id: str = ""

    def incident_or_raise(self) -> Incident:
        if self.incident is None:
            raise UsageError(self.incident_error or "Which incident? Name it, e.g. `INC-7`.", self.usage)
        return self.incident

    def open_incident_or_raise(self) -> Incident:
        incident = self.incident_or_raise()
        if not incident.is_open:
            raise UsageError(f"{incident.ref} is already resolved.", self.usage)
        return incident


@dataclass(frozen=True)
class ButtonClick:
    """A button press, with the incident its value names already looked up."""

    action_id: str
    value: str
    user: str
    channel: str | None
    trigger_id: str | None
    incident: Incident | None
    request_id: str = ""

    def incident_or_raise(self) -> Incident:
        if self.incident is None:
            raise UsageError("That incident no longer exists.")
        return self.incident


@dataclass(frozen=True)
class ViewSubmission:
    """A submitted modal: each input block's value by block_id, plus the private metadata."""

    callback_id: str
    user: str
    values: dict[str, str | None]
    metadata: dict[str, Any]


class ViewErrors(Exception):
    """Input errors to show beside the modal's fields (block_id -> message); the modal stays open."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors
