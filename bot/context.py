"""What every command handler gets: the bot's services, the parsed request, and the reply type."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.core.errors import UsageError
from bot.domain.incidents import Incident
from bot.domain.policy import Config
from bot.slack.gateway import SlackGateway
from bot.store import Store

if TYPE_CHECKING:
    from bot.google.cloud import CloudSources
    from bot.incident.announcer import Announcer
    from bot.oncall.directory import Directory
    from bot.paging.pager import Pager
    from bot.paging.timers import Timers


@dataclass
class Context:
    config: Config
    store: Store
    slack: SlackGateway
    clock: Callable[[], datetime]
    work: Executor
    announcer: Announcer
    directory: Directory
    pager: Pager
    timers: Timers
    cloud: CloudSources

    def now(self) -> datetime:
        return self.clock()


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


def each(*steps: Callable[[], object]) -> None:
    """Run every step even when one fails (a deleted announcement must not stop the stand-down
    DMs), then raise the first failure so the person who asked hears about it."""
    failures: list[Exception] = []
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - collected and re-raised below
            failures.append(exc)
    if failures:
        raise failures[0]
