"""Walking the raw YAML into `bot.domain.policy`'s dataclasses, every error with its key path."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

from bot.core.durations import parse_duration
from bot.domain import actions as permission_rules
from bot.domain import schedules as schedules_module
from bot.domain.policy import (
    ALERT_ACTIONS,
    INCIDENT_ROLES,
    SEVERITIES,
    AlertRoute,
    AlertRule,
    AlertsConfig,
    Config,
    EscalationStep,
    HeartbeatRules,
    OnCallChecks,
    PagerDutyConfig,
    PagingRules,
    RollbackRules,
    ServiceConfig,
    SeverityPolicy,
    SmokeCall,
    StatuspageConfig,
    VerifyRules,
)
from bot.domain.schedules import Schedule

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_USERGROUP_HANDLE = re.compile(r"^@[a-z0-9][a-z0-9._-]*$")
REOPEN_WITHIN_MAX = timedelta(days=1)


class Reader:
    """Walks the raw YAML, collecting every error with its key path instead of stopping at one."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{key}: {message}")

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(key, f"must be a mapping, got {type(value).__name__}")
            return {}
        for unknown in sorted(set(map(str, value)) - allowed):
            self.error(
                f"{key}.{unknown}" if key else unknown,
                f"unknown key (expected one of: {', '.join(sorted(allowed))})",
            )
        return value

    def string(self, value: Any, key: str, required: bool = True) -> str | None:
        if value is None or (not required and value == ""):
            if required:
                self.error(key, "is required")
            return None
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
            self.error(key, f"must be a non-empty string, got {value!r}")
            return None
        return str(value).strip()

    def env_name(self, value: Any, key: str) -> str:
        """The name of an environment variable that holds a secret (never the secret itself)."""
        name = self.string(value, key) or ""
        if name and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            self.error(key, f"{name[:40]!r} is not an environment variable name (put the secret in the environment)")
        return name

    def duration(self, value: Any, key: str, required: bool = False) -> timedelta | None:
        if value is None:
            if required:
                self.error(key, "is required (a duration such as 5m)")
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.error(key, str(exc))
            return None

    def string_list(self, value: Any, key: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(key, f"must be a list, got {type(value).__name__}")
            return ()
        items = []
        for i, item in enumerate(value):
            text = self.string(item, f"{key}[{i}]")
            if text is not None:
                items.append(text)
        return tuple(items)

    def severity_list(self, value: Any, key: str) -> tuple[str, ...]:
        names = []
        for i, name in enumerate(self.string_list(value, key)):
            if name.upper() not in SEVERITIES:
                self.error(f"{key}[{i}]", f"{name!r} is not a severity (P1, P2, P3 or P4)")
            else:
                names.append(name.upper())
        return tuple(names)

    def people_refs(self, value: Any, key: str, roles: set[str], extra: set[str] = frozenset()) -> tuple[str, ...]:  # type: ignore[assignment]
        refs = self.string_list(value, key)
        for i, ref in enumerate(refs):
            if not (_USER_ID.match(ref) or _EMAIL.match(ref) or ref in roles or ref in extra):
                known = ", ".join(sorted(roles | set(extra))) or "none defined"
                self.error(
                    f"{key}[{i}]",
                    f"{ref!r} is not a Slack user ID (U...), an email, or a role under people ({known})",
                )
        return refs

    def config(self, raw: dict[str, Any], source: str) -> Config | None:
        top = self.mapping(
            raw,
            "",
            {
                "channel",
                "war_room",
                "people",
                "severities",
                "postmortem",
                "service",
                "rollback",
                "runbook",
                "statuspage",
                "pagerduty",
                "permissions",
                "schedules",
                "alerts",
                "paging",
                "verify",
                "oncall_checks",
                "heartbeat",
            },
        )
        channel = (self.string(top.get("channel", "incident-response"), "channel") or "").lstrip("#")

        war_room = self.mapping(top.get("war_room"), "war_room", {"severities", "prefix"})
        war_room_severities = self.severity_list(war_room.get("severities", ["P1", "P2"]), "war_room.severities")
        prefix = self.string(war_room.get("prefix", "inc"), "war_room.prefix") or "inc"
        if not re.fullmatch(r"[a-z0-9_-]{1,20}", prefix):
            self.error(
                "war_room.prefix",
                f"{prefix!r} must be 1-20 lowercase letters, digits, - or _ (it starts channel names)",
            )

        schedules = self.schedules(top.get("schedules"))
        # A schedule with an error of its own is still a name a role may use: one error, not two.
        schedule_names = set(map(str, top["schedules"])) if isinstance(top.get("schedules"), dict) else set()
        people_raw = self.mapping(top.get("people"), "people", set(map(str, top.get("people") or {})))
        people: dict[str, tuple[str, ...]] = {}
        for role, holders in people_raw.items():
            if not _ROLE_NAME.match(str(role)):
                self.error(f"people.{role}", "role names are lowercase letters, digits and _")
                continue
            people[str(role)] = self.string_list(holders, f"people.{role}")
        for role, holders in people.items():
            for i, ref in enumerate(holders):
                self.holder(ref, f"people.{role}[{i}]", schedule_names)
        roles = set(people)

        severities_raw = self.mapping(
            top.get("severities"), "severities", set(SEVERITIES) | {s.lower() for s in SEVERITIES}
        )
        severities: dict[str, SeverityPolicy] = {}
        for name in SEVERITIES:
            body = severities_raw.get(name, severities_raw.get(name.lower()))
            if body is None:
                self.error(f"severities.{name}", "is required (every severity P1-P4 needs a policy)")
                continue
            policy = self.severity(name, body, roles)
            if policy:
                severities[name] = policy

        postmortem = self.mapping(top.get("postmortem"), "postmortem", {"severities", "due_after", "share_within"})
        postmortem_severities = self.severity_list(postmortem.get("severities", ["P1", "P2"]), "postmortem.severities")
        due_after = self.duration(postmortem.get("due_after", "24h"), "postmortem.due_after") or timedelta(hours=24)
        share_within = self.duration(postmortem.get("share_within", "2m"), "postmortem.share_within")
        if share_within is not None and share_within <= timedelta(0):
            self.error("postmortem.share_within", "must be longer than 0s")

        service_raw = self.mapping(top.get("service"), "service", {"project", "region", "name", "health_url"})
        service = ServiceConfig(
            project=self.string(service_raw.get("project"), "service.project") or "",
            region=self.string(service_raw.get("region"), "service.region") or "",
            name=self.string(service_raw.get("name"), "service.name") or "",
            health_url=self.string(service_raw.get("health_url"), "service.health_url") or "",
        )
        if service.health_url and not re.match(r"^https?://", service.health_url):
            self.error("service.health_url", f"{service.health_url!r} must be an http(s) URL")

        rollback = self.mapping(
            top.get("rollback"),
            "rollback",
            {"allowed", "require_second_person", "expires_after", "operation_timeout", "health_timeout"},
        )
        rollback_rules = self.rollback_rules(rollback)
        incident_roles = {f"incident_{r}" for r in INCIDENT_ROLES}
        allowed = self.people_refs(
            rollback.get("allowed", ["incident_commander"]),
            "rollback.allowed",
            roles,
            incident_roles,
        )

        runbook = self.mapping(top.get("runbook"), "runbook", {"path"})
        runbook_path = self.string(runbook.get("path"), "runbook.path", required=False)

        statuspage = None
        if top.get("statuspage") is not None:
            sp = self.mapping(top.get("statuspage"), "statuspage", {"page_id", "api_key_env", "api_url", "severities"})
            statuspage = StatuspageConfig(
                page_id=self.string(sp.get("page_id"), "statuspage.page_id") or "",
                api_key_env=self.string(sp.get("api_key_env", "STATUSPAGE_API_KEY"), "statuspage.api_key_env") or "",
                api_url=self.string(sp.get("api_url", "https://api.statuspage.io/v1/"), "statuspage.api_url") or "",
                severities=self.severity_list(sp.get("severities", ["P1", "P2"]), "statuspage.severities"),
            )

        pagerduty = None
        if top.get("pagerduty") is not None:
            pd = self.mapping(
                top.get("pagerduty"),
                "pagerduty",
                {"routing_key_env", "severities", "webhook_secret_env", "api_token_env"},
            )
            pagerduty = PagerDutyConfig(
                routing_key_env=self.env_name(
                    pd.get("routing_key_env", "PAGERDUTY_ROUTING_KEY"), "pagerduty.routing_key_env"
                ),
                severities=self.severity_list(pd.get("severities", ["P1", "P2"]), "pagerduty.severities"),
                webhook_secret_env=self.env_name(
                    pd.get("webhook_secret_env", "PAGERDUTY_WEBHOOK_SECRET"), "pagerduty.webhook_secret_env"
                ),
                api_token_env=self.env_name(pd["api_token_env"], "pagerduty.api_token_env")
                if pd.get("api_token_env") is not None
                else None,
            )

        permissions = self.permissions(top.get("permissions"), roles, allowed)
        if rollback_rules.require_second_person:
            self.second_person_possible(permissions, people)
        alerts = self.alerts(top.get("alerts"))
        paging = self.paging(self.mapping(top.get("paging"), "paging", {"manual_repeat_after"}))
        verify = self.verify(self.mapping(top.get("verify"), "verify", {"window", "every", "thresholds", "smoke"}))
        oncall_checks = self.oncall_checks(top) if "oncall_checks" in top else None
        heartbeat = self.heartbeat(top.get("heartbeat")) if top.get("heartbeat") is not None else None

        if self.errors:
            return None
        return Config(
            channel=channel,
            war_room_severities=war_room_severities,
            war_room_prefix=prefix,
            people=people,
            severities=severities,
            postmortem_severities=postmortem_severities,
            postmortem_due_after=due_after,
            postmortem_share_within=share_within or timedelta(minutes=2),
            service=service,
            rollback_allowed=allowed,
            runbook_path=runbook_path,
            statuspage=statuspage,
            pagerduty=pagerduty,
            permissions=permissions,
            schedules=schedules,
            rollback=rollback_rules,
            paging=paging,
            verify=verify,
            alerts=alerts,
            oncall_checks=oncall_checks,
            heartbeat=heartbeat,
            source=source,
        )

    def heartbeat(self, value: Any) -> HeartbeatRules | None:
        """`heartbeat:` {url (required, http(s)), every (default 1m), max_backlog (default 2m)}."""
        body = self.mapping(value, "heartbeat", {"url", "every", "max_backlog"})
        default = HeartbeatRules(url="")
        url = self.string(body.get("url"), "heartbeat.url") or ""
        if url and not re.match(r"https?://[^/\s]+", url):
            self.error("heartbeat.url", f"{url[:60]!r} is not an http(s) URL")
        every = self.duration(body.get("every"), "heartbeat.every")
        max_backlog = self.duration(body.get("max_backlog"), "heartbeat.max_backlog")
        every = default.every if every is None else every
        max_backlog = default.max_backlog if max_backlog is None else max_backlog
        if every <= timedelta(0):
            self.error("heartbeat.every", "must be longer than 0s")
        if max_backlog <= timedelta(0):
            self.error("heartbeat.max_backlog", "must be longer than 0s")
        return HeartbeatRules(url=url, every=every, max_backlog=max_backlog)

    def oncall_checks(self, top: dict[str, Any]) -> OnCallChecks:
        """`oncall_checks:` (present, even empty, turns the daily check on); every key has a default."""
        body = self.mapping(top.get("oncall_checks"), "oncall_checks", {"at", "timezone", "horizon", "channel"})
        at = time(9, 0)
        at_text = self.string(body.get("at", "09:00"), "oncall_checks.at")
        if at_text is not None:
            try:
                _, at = schedules_module.parse_handoff(at_text, weekly=False)
            except ValueError:
                self.error("oncall_checks.at", f"{at_text!r} is not a time of day (use HH:MM on a 24-hour clock)")
        timezone = self.string(body.get("timezone", "UTC"), "oncall_checks.timezone") or "UTC"
        try:
            schedules_module.check_timezone(timezone)
        except ValueError as exc:
            self.error("oncall_checks.timezone", str(exc))
        horizon = self.duration(body.get("horizon", "14d"), "oncall_checks.horizon")
        if horizon is None:
            horizon = timedelta(days=14)
        elif not timedelta(hours=1) <= horizon <= timedelta(days=90):
            self.error("oncall_checks.horizon", "must be between 1h and 90d")
        channel = self.string(body.get("channel"), "oncall_checks.channel", required=False)
        return OnCallChecks(at, timezone, horizon, channel.lstrip("#") if channel else None)

    def permissions(self, value: Any, roles: set[str], rollback_allowed: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
        """`permissions:` action -> who may; actions not named keep their defaults."""
        raw = self.mapping(value, "permissions", set(map(str, value)) if isinstance(value, dict) else set())
        for unknown in sorted(set(map(str, raw)) - set(permission_rules.ACTIONS)):
            self.error(
                f"permissions.{unknown}",
                f"not an action (actions: {', '.join(permission_rules.ACTIONS)})",
            )
        table = {}
        for action in permission_rules.ACTIONS:
            if raw.get(action) is None:
                table[action] = permission_rules.default_rule(action, rollback_allowed)
                continue
            key = f"permissions.{action}"
            refs = self.people_refs(raw[action], key, roles, set(permission_rules.SPECIAL_REFS))
            if not refs:
                self.error(key, "must name who may (anyone, responders, a role, a user ID or an email)")
            table[action] = refs
        return table

    def second_person_possible(
        self, permissions: dict[str, tuple[str, ...]], people: dict[str, tuple[str, ...]]
    ) -> None:
        """The two-person rule with only one person who may confirm is a deadlock: nobody could
        ever confirm a rollback or scale. Each incident role has one holder; a role under
        `people` has its entries (a schedule or user group counts as several)."""
        for action in permission_rules.ROLLBACK_ACTIONS:
            rule = permissions.get(action, ())
            count = 0
            for ref in rule:
                if ref in permission_rules.SPECIAL_REFS and not ref.startswith("incident_"):
                    count += 2  # anyone, responders, people paged: more than one
                elif ref in people:
                    count += sum(2 if h.startswith(("schedule:", "@")) else 1 for h in people[ref])
                else:
                    count += 1  # an incident role's holder, a user ID, an email
            if count < 2:
                self.error(
                    "rollback.require_second_person",
                    f"is true, but only one person may confirm a {action} ({', '.join(rule) or 'nobody'}, from "
                    f"rollback.allowed or permissions.{action}), "
                    "and the proposer may not confirm their own: nobody could ever confirm. Name a second person "
                    "or role in rollback.allowed (e.g. oncall_primary, tech_lead), or set it to false.",
                )
                return

    def holder(self, ref: str, key: str, schedules: set[str]) -> None:
        """One entry of a role: a user ID, an email, `schedule:<name>` or `@<usergroup-handle>`."""
        if ref.startswith("schedule:"):
            name = ref.removeprefix("schedule:")
            if name not in schedules:
                known = ", ".join(sorted(schedules)) or "none defined"
                self.error(key, f"{ref!r} names no schedule under schedules ({known})")
        elif ref.startswith("@"):
            if not _USERGROUP_HANDLE.match(ref):
                self.error(key, f"{ref!r} is not a Slack user group handle (lowercase letters, digits, . _ -)")
        elif not (_USER_ID.match(ref) or _EMAIL.match(ref)):
            self.error(
                key,
                f"{ref!r} is not a Slack user ID (U...), an email, schedule:<name> or @<usergroup-handle>",
            )

    def schedules(self, value: Any) -> dict[str, Schedule]:
        """`schedules:` — on-call rotations, used in roles as `schedule:<name>`."""
        found: dict[str, Schedule] = {}
        for name, body_raw in self.mapping(value, "schedules", set(map(str, value or {}))).items():
            key = f"schedules.{name}"
            if not _ROLE_NAME.match(str(name)):
                self.error(key, "schedule names are lowercase letters, digits and _")
                continue
            body = self.mapping(
                body_raw, key, {"timezone", "rotation", "handoff", "start", "members", "allow_outside_overrides"}
            )
            errors_before = len(self.errors)
            timezone = self.string(body.get("timezone"), f"{key}.timezone")
            if timezone is not None:
                try:
                    schedules_module.check_timezone(timezone)
                except ValueError as exc:
                    self.error(f"{key}.timezone", str(exc))
            rotation = self.string(body.get("rotation"), f"{key}.rotation")
            length = None
            if rotation is not None:
                try:
                    length = schedules_module.parse_rotation(rotation)
                except ValueError as exc:
                    self.error(f"{key}.rotation", str(exc))
            weekly = (rotation or "").lower() == "weekly"
            handoff = self.string(body.get("handoff", "mon 09:00" if weekly else "09:00"), f"{key}.handoff")
            weekday, at = None, None
            if handoff is not None and length is not None:  # which form is right depends on the rotation
                try:
                    weekday, at = schedules_module.parse_handoff(handoff, weekly)
                except ValueError as exc:
                    self.error(f"{key}.handoff", str(exc))
            start = self.date(body.get("start"), f"{key}.start")
            members = self.string_list(body.get("members"), f"{key}.members")
            if not members and isinstance(body.get("members"), (list, type(None))):
                self.error(f"{key}.members", "must list at least one member (user IDs or emails)")
            for i, member in enumerate(members):
                if not (_USER_ID.match(member) or _EMAIL.match(member)):
                    self.error(f"{key}.members[{i}]", f"{member!r} is not a Slack user ID (U...) or an email")
            outside = body.get("allow_outside_overrides", False)
            if not isinstance(outside, bool):
                self.error(f"{key}.allow_outside_overrides", f"must be true or false, got {outside!r}")
            if len(self.errors) == errors_before:
                assert timezone and rotation and length and at is not None and start
                found[str(name)] = Schedule(
                    str(name), timezone, rotation, length, weekday, at, start, members, outside is True
                )
        return found

    def date(self, value: Any, key: str) -> date | None:
        if value is None:
            self.error(key, "is required (the date the first shift begins, e.g. 2026-11-02)")
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            self.error(key, f"{value!r} is not a date (use YYYY-MM-DD, e.g. 2026-11-02)")
            return None

    def rollback_rules(self, block: dict[str, Any]) -> RollbackRules:
        default = RollbackRules()
        second = block.get("require_second_person", False)
        if not isinstance(second, bool):
            self.error("rollback.require_second_person", f"must be true or false, got {second!r}")
            second = False
        durations = {}
        for key in ("expires_after", "operation_timeout", "health_timeout"):
            value = self.duration(block.get(key), f"rollback.{key}")
            if value is not None and value <= timedelta(0):
                self.error(f"rollback.{key}", "must be longer than 0s")
            durations[key] = value if value else getattr(default, key)
        return RollbackRules(require_second_person=second, **durations)

    def paging(self, block: dict[str, Any]) -> PagingRules:
        repeat = self.duration(block.get("manual_repeat_after"), "paging.manual_repeat_after")
        if repeat is not None and repeat < timedelta(0):
            self.error("paging.manual_repeat_after", "must be 0s or longer")
        return PagingRules(manual_repeat_after=repeat) if repeat is not None else PagingRules()

    def verify(self, block: dict[str, Any]) -> VerifyRules:
        """`verify:` window, every, thresholds {error_rate: 1%, p95: 500ms}, smoke [{url, expect}]."""
        default = VerifyRules()
        window = self.duration(block.get("window"), "verify.window") or default.window
        every = self.duration(block.get("every"), "verify.every") or default.every
        if window <= timedelta(0):
            self.error("verify.window", "must be longer than 0s")
        if every <= timedelta(0) or every > window:
            self.error("verify.every", f"must be longer than 0s and at most verify.window ({window})")
        thresholds = self.mapping(block.get("thresholds"), "verify.thresholds", {"error_rate", "p95"})
        error_rate = default.error_rate
        if thresholds.get("error_rate") is not None:
            raw = str(thresholds["error_rate"]).strip()
            match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", raw)
            if match and 0 < float(match.group(1)) <= 100:
                error_rate = float(match.group(1)) / 100
            else:
                self.error("verify.thresholds.error_rate", f"{raw!r} is not a percentage above 0 (e.g. 1% or 0.5%)")
        p95_ms = default.p95_ms
        if thresholds.get("p95") is not None:
            raw = str(thresholds["p95"]).strip()
            match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s)", raw)
            if match and float(match.group(1)) > 0:
                p95_ms = float(match.group(1)) * (1000 if match.group(2) == "s" else 1)
            else:
                self.error("verify.thresholds.p95", f"{raw!r} is not a latency above 0 (e.g. 500ms or 1.5s)")
        smoke: list[SmokeCall] = []
        raw_smoke = block.get("smoke") or []
        if not isinstance(raw_smoke, list):
            self.error("verify.smoke", "must be a list of {url, expect}")
            raw_smoke = []
        for i, item in enumerate(raw_smoke):
            key = f"verify.smoke[{i}]"
            call = self.mapping(item, key, {"url", "expect"})
            url = self.string(call.get("url"), f"{key}.url") or ""
            if url and not re.match(r"^https?://", url):
                self.error(f"{key}.url", f"{url!r} must be an http(s) URL")
            expect = call.get("expect", 200)
            if not isinstance(expect, int) or isinstance(expect, bool) or not 100 <= expect <= 599:
                self.error(f"{key}.expect", f"must be an HTTP status (100-599), got {expect!r}")
                expect = 200
            smoke.append(SmokeCall(url, expect))
        return VerifyRules(window=window, every=every, error_rate=error_rate, p95_ms=p95_ms, smoke=tuple(smoke))

    def alerts(self, value: Any) -> AlertsConfig | None:
        """The optional `alerts:` section: a default route and rules tried in order."""
        if value is None:
            return None
        body = self.mapping(value, "alerts", {"default", "reopen_within", "rules"})
        default_raw = self.mapping(body.get("default"), "alerts.default", {"severity", "action"})
        default = self.alert_route(default_raw, "alerts.default")
        rules: list[AlertRule] = []
        raw_rules = body.get("rules") or []
        if not isinstance(raw_rules, list):
            self.error("alerts.rules", f"must be a list of rules, got {type(raw_rules).__name__}")
            raw_rules = []
        for i, raw in enumerate(raw_rules):
            key = f"alerts.rules[{i}]"
            rule = self.mapping(raw, key, {"match", "severity", "action"})
            match = self.mapping(rule.get("match"), f"{key}.match", {"policy", "labels"})
            policy = self.string(match.get("policy"), f"{key}.match.policy", required=False)
            labels_raw = match.get("labels")
            labels: list[tuple[str, str]] = []
            if labels_raw is not None and not isinstance(labels_raw, dict):
                self.error(f"{key}.match.labels", f"must be a mapping of label: glob, got {type(labels_raw).__name__}")
            for name, pattern in (labels_raw or {}).items() if isinstance(labels_raw, dict) else ():
                text = self.string(pattern, f"{key}.match.labels.{name}")
                if text is not None:
                    labels.append((str(name), text))
            if policy is None and not labels:  # a rule matching everything would hide the default
                self.error(f"{key}.match", "is required: a `policy` glob, `labels`, or both")
            route = self.alert_route(rule, key, default)
            if route is not None:
                rules.append(AlertRule(route=route, policy=policy, labels=tuple(labels)))
        reopen_within = self.duration(body.get("reopen_within"), "alerts.reopen_within")
        if reopen_within is not None and reopen_within > REOPEN_WITHIN_MAX:
            self.error(
                "alerts.reopen_within", "must be at most 1d: a longer window hides new incidents behind old ones"
            )
            reopen_within = None
        if default is None:
            return None
        if reopen_within is None:
            return AlertsConfig(default=default, rules=tuple(rules))
        return AlertsConfig(default=default, rules=tuple(rules), reopen_within=reopen_within)

    def alert_route(self, body: dict[str, Any], key: str, fallback: AlertRoute | None = None) -> AlertRoute | None:
        """`{severity, action}`; a rule leaves out what it takes from `alerts.default`."""
        severity = str(body.get("severity", fallback.severity if fallback else "P2")).upper()
        action = str(body.get("action", fallback.action if fallback else "propose")).lower()
        ok = True
        if severity not in SEVERITIES:
            self.error(f"{key}.severity", f"{body.get('severity')!r} is not a severity (P1, P2, P3 or P4)")
            ok = False
        if action not in ALERT_ACTIONS:
            self.error(f"{key}.action", f"{body.get('action')!r} is not an action ({', '.join(ALERT_ACTIONS)})")
            ok = False
        return AlertRoute(severity=severity, action=action) if ok else None

    def severity(self, name: str, body: Any, roles: set[str]) -> SeverityPolicy | None:
        key = f"severities.{name}"
        body = self.mapping(
            body,
            key,
            {
                "label",
                "description",
                "ack_within",
                "fix_within",
                "update_every",
                "notify",
                "escalation",
            },
        )
        steps_raw = body.get("escalation")
        steps: list[EscalationStep] = []
        if not isinstance(steps_raw, list) or not steps_raw:
            self.error(f"{key}.escalation", "must be a non-empty list of {after, page} steps")
        else:
            previous = timedelta(-1)
            for i, step_raw in enumerate(steps_raw):
                step_key = f"{key}.escalation[{i}]"
                step = self.mapping(step_raw, step_key, {"after", "page"})
                after = self.duration(step.get("after"), f"{step_key}.after", required=True)
                page = self.people_refs(step.get("page"), f"{step_key}.page", roles)
                if not page:
                    self.error(f"{step_key}.page", "must name at least one role or user")
                if after is not None:
                    if after < previous:
                        self.error(f"{step_key}.after", "steps must be in order of their `after`")
                    previous = after
                    steps.append(EscalationStep(after=after, page=page))
        return SeverityPolicy(
            name=name,
            label=self.string(body.get("label", name), f"{key}.label") or name,
            description=self.string(body.get("description", ""), f"{key}.description", required=False) or "",
            ack_within=self.duration(body.get("ack_within"), f"{key}.ack_within"),
            fix_within=self.duration(body.get("fix_within"), f"{key}.fix_within"),
            update_every=self.duration(body.get("update_every"), f"{key}.update_every"),
            notify=self.people_refs(body.get("notify"), f"{key}.notify", roles),
            escalation=tuple(steps),
        )
