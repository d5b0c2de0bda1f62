"""The configuration as the rest of the bot reads it: frozen dataclasses, no I/O.

`bot.config` reads and validates the YAML into these; everything else (domain rules, adapters,
features) takes them as given and never parses a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time, timedelta

from bot.domain.schedules import Schedule

SEVERITIES = ("P1", "P2", "P3", "P4")
INCIDENT_ROLES = ("commander", "scribe", "comms")


@dataclass(frozen=True)
class EscalationStep:
    after: timedelta
    page: tuple[str, ...]


@dataclass(frozen=True)
class SeverityPolicy:
    name: str
    label: str
    description: str
    ack_within: timedelta | None
    fix_within: timedelta | None
    update_every: timedelta | None
    notify: tuple[str, ...]
    escalation: tuple[EscalationStep, ...]


@dataclass(frozen=True)
class ServiceConfig:
    project: str
    region: str
    name: str
    health_url: str


@dataclass(frozen=True)
class StatuspageConfig:
    page_id: str
    api_key_env: str
    api_url: str
    severities: tuple[str, ...] = ("P1", "P2")  # which declares open a public incident


@dataclass(frozen=True)
class PagerDutyConfig:
    """Escalation also through PagerDuty (Events API v2 out), and its acks back in (v3 webhooks)."""

    routing_key_env: str = "PAGERDUTY_ROUTING_KEY"  # the Events API v2 integration key's variable
    severities: tuple[str, ...] = ("P1", "P2")  # these severities also page through PagerDuty
    webhook_secret_env: str = "PAGERDUTY_WEBHOOK_SECRET"  # the v3 webhook subscription's signing secret
    api_token_env: str | None = None  # a REST API token: acks show as the Slack user with that email


ALERT_ACTIONS = ("declare", "propose", "ignore")


@dataclass(frozen=True)
class AlertRoute:
    """What to do with an alert: its severity if it becomes an incident, and the action."""

    severity: str
    action: str  # declare | propose | ignore


@dataclass(frozen=True)
class AlertRule:
    """`match` globs on the policy (alert) name and on labels; every given one must match."""

    route: AlertRoute
    policy: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AlertsConfig:
    default: AlertRoute
    rules: tuple[AlertRule, ...] = ()
    # A group (or alert) firing again less than this after its incident was resolved posts in
    # that incident, with a Reopen button, instead of opening a new one; 0s: never.
    reopen_within: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class RollbackRules:
    """How confirmed production changes (rollback, scale) are carried out."""

    require_second_person: bool = False  # the proposer cannot confirm their own proposal
    expires_after: timedelta = timedelta(minutes=15)  # an unconfirmed proposal goes stale
    operation_timeout: timedelta = timedelta(minutes=5)  # wait for Cloud Run's operation
    health_timeout: timedelta = timedelta(seconds=60)  # wait for the health endpoint's 200


@dataclass(frozen=True)
class PagingRules:
    """Limits on paging by hand (`/incident page @someone`)."""

    # A second manual page of the same person for the same incident within this is refused.
    manual_repeat_after: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class SmokeCall:
    """One of `verify.smoke`: a real API call whose answer must be `expect`."""

    url: str
    expect: int = 200


@dataclass(frozen=True)
class VerifyRules:
    """The runbook's step 6, VERIFY FIX: watch `window`, sampling every `every`; the fix held
    if every sample is within the thresholds (5xx under 1%, p95 under 500 ms, health 200, the
    smoke calls as expected)."""

    window: timedelta = timedelta(minutes=5)
    every: timedelta = timedelta(seconds=30)
    error_rate: float = 0.01  # the 5xx share of requests, 0..1
    p95_ms: float = 500.0
    smoke: tuple[SmokeCall, ...] = ()


@dataclass(frozen=True)
class OnCallChecks:
    """The daily readiness check (`oncall_checks`): when, over how far ahead, and where it posts."""

    at: time = time(9, 0)  # on the wall clock of `timezone`
    timezone: str = "UTC"
    horizon: timedelta = timedelta(days=14)
    channel: str | None = None  # None: the announcement channel


@dataclass(frozen=True)
class HeartbeatRules:
    """`heartbeat:` a dead man's switch the leader calls (GET `url`) every `every` while healthy:
    its timers fire on time and the oldest undelivered page is younger than `max_backlog`."""

    url: str
    every: timedelta = timedelta(minutes=1)
    max_backlog: timedelta = timedelta(minutes=2)


@dataclass(frozen=True)
class Config:
    channel: str
    war_room_severities: tuple[str, ...]
    war_room_prefix: str
    people: dict[str, tuple[str, ...]]
    severities: dict[str, SeverityPolicy]
    postmortem_severities: tuple[str, ...]
    postmortem_due_after: timedelta
    service: ServiceConfig
    rollback_allowed: tuple[str, ...]
    runbook_path: str | None = None
    statuspage: StatuspageConfig | None = None
    pagerduty: PagerDutyConfig | None = None
    # action -> who may (bot/permissions.py); every known action, defaults filled in.
    permissions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    schedules: dict[str, Schedule] = field(default_factory=dict)
    rollback: RollbackRules = field(default_factory=RollbackRules)
    paging: PagingRules = field(default_factory=PagingRules)
    verify: VerifyRules = field(default_factory=VerifyRules)
    alerts: AlertsConfig | None = None
    heartbeat: HeartbeatRules | None = None  # None: no dead man's switch
    oncall_checks: OnCallChecks | None = None  # None: no daily readiness check (`check-oncall` still runs)
    # How long Slack may take to show an uploaded draft in the channel before it is deleted and
    # uploaded again (Slack answers the upload before it shares the file, and may never share it).
    postmortem_share_within: timedelta = timedelta(minutes=2)
    source: str = field(default="built-in default", compare=False)

    def policy(self, severity: str) -> SeverityPolicy:
        return self.severities[severity]

    def has_war_room(self, severity: str) -> bool:
        return severity in self.war_room_severities
