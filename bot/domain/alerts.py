"""Alerts as the bot understands them, and the pure rules that decide what each one becomes.

An `Alert` is one firing (or closing) alert, whichever monitoring system sent it. `route` picks
the config's first rule that matches it (globs on the policy name and on labels), else the
default; `scenario_for` names the runbook scenario whose alert trigger it resembles; `incident_title`
is the title its incident would get. No I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from bot.core.mrkdwn import escape, link, truncate
from bot.domain.incidents import TITLE_MAX, clean_title
from bot.domain.policy import AlertRoute, AlertRule, AlertsConfig
from bot.domain.records import AlertRecord
from bot.domain.scenarios import SCENARIOS, Scenario

CLOUD_MONITORING = "cloud-monitoring"
ALERTMANAGER = "alertmanager"
SOURCE_NAMES = {CLOUD_MONITORING: "Cloud Monitoring", ALERTMANAGER: "Alertmanager"}


@dataclass(frozen=True)
class Alert:
    """One alert from a monitoring system, open (firing) or closed (resolved)."""

    source: str  # cloud-monitoring | alertmanager
    alert_id: str  # Cloud Monitoring's incident_id, Alertmanager's fingerprint
    policy: str  # the alerting policy's name, or Alertmanager's `alertname` label
    state: str  # open | closed
    started_at: datetime
    ended_at: datetime | None = None
    summary: str = ""
    url: str | None = None
    labels: dict[str, str] = field(default_factory=dict, compare=False)
    group_key: str = ""  # alerts of one group (an Alertmanager group, a policy) share an incident
    condition: str = ""
    source_severity: str | None = None  # the policy's own severity label, shown, not routed on

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def source_name(self) -> str:
        return SOURCE_NAMES.get(self.source, self.source)


def route(alert: Alert, config: AlertsConfig) -> AlertRoute:
    """The first rule that matches decides; an alert no rule matches follows the default."""
    for rule in config.rules:
        if matches(rule, alert):
            return rule.route
    return config.default


def matches(rule: AlertRule, alert: Alert) -> bool:
    """Every condition the rule gives must hold. Policy globs ignore case (people write policy
    names by hand); label globs do not (Prometheus labels are case-sensitive)."""
    if rule.policy is not None and not fnmatchcase(alert.policy.casefold(), rule.policy.casefold()):
        return False
    for name, pattern in rule.labels:
        value = alert.labels.get(name)
        if value is None or not fnmatchcase(value, pattern):
            return False
    return True


def incident_title(policy_name: str, summary_text: str) -> str:
    """The incident title: the policy name and the alert's summary, on one line, within limits."""
    policy = clean_title(policy_name) or "Alert"
    summary = clean_title(summary_text)
    title = f"{policy}: {summary}" if summary and summary.casefold() != policy.casefold() else policy
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1].rstrip() + "…"


_WORD = re.compile(r"[a-z0-9/%]+")
# Words every trigger has: they say nothing about which scenario it is.
_COMMON = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "at",
        "for",
        "in",
        "is",
        "of",
        "on",
        "or",
        "than",
        "the",
        "to",
        "minutes",
        "minute",
        "min",
        "mins",
        "5",
        "10",
        "2",
        "over",
        "above",
        "below",
        "more",
        "less",
        "spike",
        "spikes",
        "go",
        "get",
        "take",
        "longer",
        "requests",
        "request",
    ]
)
_KEYWORD_WEIGHT = 3


def scenario_for(*texts: str) -> Scenario | None:
    """The runbook scenario whose alert trigger and keywords best match an alert's words (its
    policy, condition and summary).

    A keyword (`latency`, `memory`, `error rate`) weighs more than a word shared with the
    trigger's sentence; no shared word at all means no scenario is suggested.
    """
    text = " ".join(texts).casefold()
    words = _words(text)
    best: tuple[int, int] | None = None
    found: Scenario | None = None
    for scenario in SCENARIOS:
        score = sum(_KEYWORD_WEIGHT for k in scenario.keywords if _has_phrase(text, k))
        score += len(words & _words(scenario.alert_trigger.casefold()))
        if score and (best is None or score > best[0]):
            best, found = (score, scenario.number), scenario
    return found


def _words(text: str) -> set[str]:
    # A plural and its singular are one word here ("writes" in a trigger, "write" in a policy).
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in _WORD.findall(text)} - _COMMON


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase.casefold())}(?![a-z0-9])", text) is not None


def link_label(record: AlertRecord) -> str:
    """What an alert's link opens. An Alertmanager alert's link is its `generatorURL`, set by
    whatever raised it (usually Prometheus's graph), and Alertmanager's own page only when that
    is missing: naming either would be wrong half the time."""
    if record.source == ALERTMANAGER:
        return "open its source"
    return f"open in {SOURCE_NAMES.get(record.source, record.source)}"


def attached_line(record: AlertRecord) -> str:
    """The timeline's line for an alert attached to an incident, with its link."""
    source = SOURCE_NAMES.get(record.source, record.source)
    url = link(record.url, link_label(record))
    summary = f": {truncate(escape(record.summary), 300)}" if record.summary else ""
    line = f"🚨 Alert firing since {record.started_at:%H:%M} UTC: *{escape(record.policy)}* ({source}){summary}"
    return f"{line} · {url}" if url else line


def closed_line(record: AlertRecord, ended: datetime) -> str:
    """The timeline's line for an incident's alert that closed."""
    return (
        f"Alert closed: {escape(record.policy)} ({SOURCE_NAMES.get(record.source, record.source)}) at {ended:%H:%M} UTC"
    )
