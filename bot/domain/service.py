"""The service the bot acts on, as the domain sees it: small frozen records of what Cloud Run,
Cloud Logging and the health endpoint said (`bot.google` converts the Google types into these).
No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ServiceRef:
    """The Cloud Run service the bot acts on (the config's `service:` block)."""

    project: str
    region: str
    name: str
    health_url: str = ""

    @property
    def path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/services/{self.name}"

    @classmethod
    def from_config(cls, block: Mapping[str, Any]) -> ServiceRef:
        return cls(
            project=str(block["project"]),
            region=str(block["region"]),
            name=str(block["name"]),
            health_url=str(block.get("health_url") or ""),
        )


@dataclass(frozen=True)
class TrafficShare:
    revision: str  # short revision id, e.g. tai-autonomics-00042-xyz
    percent: int
    tag: str = ""
    latest: bool = False  # allocated as "latest ready revision"


@dataclass(frozen=True)
class ServiceState:
    name: str
    url: str
    ready: bool | None  # None: the Ready condition is still reconciling
    ready_message: str
    latest_created_revision: str
    latest_ready_revision: str
    traffic: tuple[TrafficShare, ...]
    memory_limit: str | None
    max_instances: int | None
    reconciling: bool = False
    updated_at: datetime | None = None  # last change to the service, traffic included
    etag: str = ""  # Cloud Run's fingerprint of this version: a write carrying a stale one is refused
    generation: int = 0
    observed_generation: int = 0  # the generation serving: behind `generation` while reconciling


@dataclass(frozen=True)
class RevisionState:
    name: str
    created_at: datetime | None
    ready: bool | None
    ready_message: str
    ready_since: datetime | None  # when Ready last changed: the best "went live" estimate
    image: str
    memory_limit: str | None


@dataclass(frozen=True)
class HttpInfo:
    method: str
    url: str
    path: str
    status: int | None
    latency_ms: float | None


@dataclass(frozen=True)
class LogRecord:
    timestamp: datetime
    severity: str
    log_name: str
    revision: str
    message: str
    http: HttpInfo | None = None
    error_code: str = ""
    path: str = ""  # the request path, from httpRequest or jsonPayload.path


@dataclass(frozen=True)
class HealthResult:
    url: str
    status: int
    latency_ms: float
    body: str  # at most HEALTH_BODY_CHARS characters


@dataclass(frozen=True)
class RequestMetrics:
    """The service's requests over an interval: how many, how many 5xx, their p95 latency, and
    which source counted them (`Cloud Monitoring`, or `Cloud Logging` when it could not)."""

    requests: int
    errors: int
    p95_ms: float | None
    source: str
    note: str = ""  # why the first choice was not used


@dataclass(frozen=True)
class ChangeResult:
    """A finished long-running operation on the service, and the service it left behind."""

    operation: str
    service: ServiceState


class ChangeError(Exception):
    """Cloud Run refused a change or did not finish it in time.

    `reason` is one of permission_denied, not_found, failed_precondition, conflict, stale
    (the etag sent no longer matches: production changed since it was read), invalid,
    timeout, unavailable, not_ready (the new revision failed to become Ready), error; `sent` says whether Google accepted the request (so the change
    may still be happening) or refused it outright (nothing changed).
    """

    def __init__(self, reason: str, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.sent = sent


def short_revision(name: str) -> str:
    return name.rsplit("/", 1)[-1]
