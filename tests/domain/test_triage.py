"""Triage rules, the scenario catalogue and the diagnosis blocks, from fixture findings.

Pure: no sandbox, no clock. Each rule has a case that fires and cases that must not.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import findings as fx
from bot.domain import scenarios
from bot.domain import triage as triage_rules
from bot.domain.findings import (
    Report,
    RequestsFinding,
    RequestStats,
    RevisionsFinding,
    ServiceFinding,
    SignalsFinding,
    SourceError,
    SourceResult,
    Upstream,
)
from bot.domain.service import HealthResult, HttpInfo, LogRecord, RevisionState, ServiceRef, ServiceState, TrafficShare
from bot.domain.triage import triage
from bot.slack.blocks.diagnose import detail_texts, summary_blocks
from bot.slack.ids import ROLLBACK_PROPOSE

NOW = datetime(2026, 1, 25, 14, 40, tzinfo=UTC)
TARGET = ServiceRef("demo", "us-central1", "svc", "https://svc.example/health")
NEW, OLD, OLDER = "svc-00043-new", "svc-00042-old", "svc-00041-older"


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


# -- fixture findings -------------------------------------------------------------------------


def service(serving: str = NEW, memory: str | None = "512Mi") -> ServiceFinding:
    return ServiceFinding(
        ServiceState(
            name="projects/demo/locations/us-central1/services/svc",
            url="https://svc.example",
            ready=True,
            ready_message="",
            latest_created_revision=serving,
            latest_ready_revision=serving,
            traffic=(TrafficShare(serving, 100, latest=True),),
            memory_limit=memory,
            max_instances=10,
        )
    )


def revision(name: str, live_ago: timedelta, ready: bool = True) -> RevisionState:
    live = NOW - live_ago
    return RevisionState(name, live - timedelta(seconds=40), ready, "", live, f"img:{name}", "512Mi")


def revisions(new_live_ago: timedelta = timedelta(minutes=8)) -> RevisionsFinding:
    return RevisionsFinding(
        (
            revision(NEW, new_live_ago),
            revision(OLD, timedelta(hours=26)),
            revision(OLDER, timedelta(days=3)),
        )
    )


def error_log(ago: timedelta, path: str = "/pricing", message: str = "badarg") -> LogRecord:
    return LogRecord(
        timestamp=NOW - ago,
        severity="ERROR",
        log_name="projects/demo/logs/run.googleapis.com%2Fstdout",
        revision=NEW,
        message=message,
        error_code="internal_error",
        path=path,
    )


def errors_between(start_ago: float, end_ago: float, count: int, **kw: str) -> list[LogRecord]:
    """`count` errors spread evenly from `start_ago` to `end_ago` minutes ago."""
    step = (start_ago - end_ago) / max(count - 1, 1)
    return [error_log(minutes(start_ago - i * step), **kw) for i in range(count)]


def errors(records: list[LogRecord]) -> fx.ErrorsFinding:
    return fx.summarise_errors(records, NOW - fx.WINDOW)


def requests(total: int = 100, server_errors: int = 0, p95: float = 200.0, by_path=None) -> RequestsFinding:
    stats = RequestStats(total, server_errors, 0, p95 / 2, p95)
    window = RequestStats(total * 3, server_errors, 0, p95 / 2, p95)
    paths = by_path or (("/pricing", total, server_errors),)
    return RequestsFinding(recent=stats, window=window, by_path=tuple(paths), sampled=False)


def signals(oom=0, restarts=0, rate_limited=0, upstream=()) -> SignalsFinding:
    return SignalsFinding(
        oom=oom,
        oom_sample="Memory limit of 512 MiB exceeded with 530 MiB used." if oom else "",
        restarts=restarts,
        restart_sample="Container terminated on signal 9." if restarts else "",
        rate_limited=rate_limited,
        upstream=tuple(upstream),
    )


def health(status: int = 200) -> HealthResult:
    return HealthResult("https://svc.example/health", status, 42.0, '{"status": "ok"}')


def report(**findings: object) -> Report:
    results = []
    for name in fx.SOURCE_NAMES:
        value = findings.get(name)
        if isinstance(value, SourceError):
            results.append(SourceResult(name, 0.0, 1.0, error=value))
        elif value is not None:
            results.append(SourceResult(name, 0.0, 0.1, finding=value))
    return Report(TARGET, NOW, tuple(results), elapsed_s=0.1)


def scenario_ids(r: Report, severity: str = "P2") -> list[str]:
    return [m.scenario for m in triage(r, severity).matches]


# -- 1A bad deployment ------------------------------------------------------------------------


def bad_deploy_report(**overrides: object) -> Report:
    findings: dict[str, object] = {
        "service": service(),
        "revisions": revisions(minutes(8)),
        "errors": errors(errors_between(4, 0, 40)),
        "requests": requests(100, 38),
        "health": health(503),
    }
    findings.update(overrides)
    return report(**findings)


def test_revision_live_shortly_before_errors_is_a_bad_deployment_with_a_rollback_target():
    match = triage_rules.bad_deployment(bad_deploy_report())
    assert match is not None
    assert (match.scenario, match.rollback_revision) == ("1A", OLD)
    assert "went live 8 min ago, 4 min before errors started" in match.reason
    assert "40 error entries since" in match.reason and "38%" in match.reason
    assert match.confidence_label == "high"


def test_bad_deployment_onset_ignores_an_isolated_error_right_after_go_live():
    noisy = errors([error_log(minutes(7.5))] + errors_between(4, 0, 30))
    match = triage_rules.bad_deployment(bad_deploy_report(errors=noisy))
    assert match is not None and "4 min before errors started" in match.reason


def test_old_deploy_is_not_a_bad_deployment():
    r = bad_deploy_report(revisions=revisions(timedelta(hours=26)))
    assert triage_rules.bad_deployment(r) is None


def test_errors_that_were_already_there_before_the_deploy_are_not_a_bad_deployment():
    steady = errors(errors_between(15, 0, 60))  # same rate before and after go-live
    assert triage_rules.bad_deployment(bad_deploy_report(errors=steady)) is None


def test_errors_starting_long_after_the_deploy_are_not_a_bad_deployment():
    late = bad_deploy_report(revisions=revisions(minutes(28)), errors=errors(errors_between(3, 0, 30)))
    assert triage_rules.bad_deployment(late) is None


def test_a_handful_of_errors_after_a_deploy_is_not_a_bad_deployment():
    few = bad_deploy_report(errors=errors(errors_between(4, 0, triage_rules.MIN_ERRORS - 1)))
    assert triage_rules.bad_deployment(few) is None


def test_bad_deployment_without_an_earlier_healthy_revision_has_no_rollback_target():
    only_new = RevisionsFinding((revision(NEW, minutes(8)), revision(OLD, minutes(60), ready=False)))
    match = triage_rules.bad_deployment(bad_deploy_report(revisions=only_new))
    assert match is not None and match.rollback_revision is None
    assert "No earlier healthy revision" in match.reason


def test_traffic_pinned_to_an_old_revision_went_live_at_the_last_service_update():
    pinned = ServiceFinding(
        replace(
            service(OLD).state,
            traffic=(TrafficShare(OLD, 100, latest=False),),
            updated_at=NOW - minutes(2),
        )
    )
    r = report(service=pinned, revisions=revisions(minutes(8)))
    assert r.serving is not None and (r.serving.revision, r.serving.age) == (OLD, minutes(2))
    assert r.last_healthy_revision == OLDER


def test_bad_deployment_needs_service_and_revisions():
    assert triage_rules.bad_deployment(bad_deploy_report(revisions=None)) is None
    assert triage_rules.bad_deployment(bad_deploy_report(service=None)) is None


# -- 1 / 1B / 8 -------------------------------------------------------------------------------


def test_restarts_mean_crash_but_memory_messages_add_scenario_8_with_a_bigger_limit():
    r = report(service=service(), signals=signals(oom=9, restarts=9))
    ids = scenario_ids(r)
    assert "1B" in ids and "8" in ids
    eight = next(m for m in triage(r).matches if m.scenario == "8")
    assert "9 “memory limit exceeded” messages" in eight.reason and "512Mi" in eight.reason
    assert eight.next_step.endswith("--memory=1Gi") and "gcloud run services update" in eight.next_step


def test_restarts_without_memory_messages_are_1b_only():
    ids = scenario_ids(report(signals=signals(restarts=4)))
    assert ids == ["1B"]


def test_one_restart_and_no_memory_messages_is_nothing():
    assert triage_rules.crash_restarts(report(signals=signals(restarts=1))) is None
    assert triage_rules.memory_exceeded(report(signals=signals(restarts=1))) is None


def test_error_rate_above_ten_percent_without_other_cause_is_service_down():
    match = triage_rules.service_down(report(requests=requests(100, 25), health=health(200)))
    assert match is not None and match.scenario == "1" and "25%" in match.reason


def test_failing_health_check_alone_is_service_down_with_low_confidence():
    match = triage_rules.service_down(report(requests=requests(100, 1), health=health(503)))
    assert match is not None and match.confidence_label == "low" and "503" in match.reason


def test_unreachable_health_endpoint_is_service_down_but_a_missing_health_url_is_not():
    refused = SourceError("error", "URLError", "Connection refused", "Health endpoint unreachable (connection refused)")
    down = triage_rules.service_down(report(health=refused))
    assert down is not None and down.reason == "Health endpoint unreachable (connection refused)."
    slow = SourceError("timeout", "Timeout", "no answer within 8 s", "timed out after 8 s")
    assert triage_rules.service_down(report(health=slow)).reason == "The health endpoint timed out after 8 s."
    unset = report(health=SourceError("error", "NotConfigured", "no service.health_url"))
    assert triage_rules.service_down(unset) is None


def test_healthy_numbers_are_not_service_down():
    assert triage_rules.service_down(report(requests=requests(100, 2), health=health(200))) is None


def test_bad_deployment_supersedes_the_generic_service_down():
    ids = scenario_ids(bad_deploy_report())
    assert ids[0] == "1A" and "1" not in ids


# -- 2 / 3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("failed", "expected"), [(5, "2"), (7, "2"), (10, "2"), (4, None), (11, None)])
def test_error_rate_between_five_and_ten_percent_is_scenario_2(failed, expected):
    match = triage_rules.partial_errors(report(requests=requests(100, failed)))
    assert (match.scenario if match else None) == expected


def test_error_rate_needs_enough_requests():
    assert triage_rules.partial_errors(report(requests=requests(10, 1))) is None


def test_p95_over_one_second_is_a_latency_spike():
    match = triage_rules.slow_responses(report(requests=requests(100, 0, p95=2500)))
    assert match is not None and match.scenario == "3" and "2,500 ms" in match.reason


@pytest.mark.parametrize(("total", "p95"), [(100, 900), (100, 1000), (10, 5000)])
def test_fast_or_too_few_requests_is_no_latency_spike(total, p95):
    assert triage_rules.slow_responses(report(requests=requests(total, 0, p95=p95))) is None


# -- 4 / 5 / 7 dependencies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "scenario", "rule"),
    [
        ("Stripe", "4", triage_rules.stripe_failures),
        ("Firestore", "5", triage_rules.firestore_failures),
        ("Pub/Sub", "7", triage_rules.pubsub_failures),
    ],
)
def test_dependency_failures_name_their_scenario(name, scenario, rule):
    upstream = Upstream(name, 6, 5, f"{name} timed out")
    match = rule(report(signals=signals(upstream=[upstream])))
    assert match is not None and match.scenario == scenario
    assert f"6 warnings/errors in 15 min name {name} (5 timeouts)" in match.reason
    assert rule(report(signals=signals(upstream=[Upstream(name, 2, 2, "x")]))) is None
    other = Upstream("Stripe" if name != "Stripe" else "Firestore", 9, 9, "x")
    assert rule(report(signals=signals(upstream=[other]))) is None


def record(message: str, severity: str = "ERROR", status: int | None = None) -> LogRecord:
    http = HttpInfo("POST", "https://svc.example/x", "/x", status, 12.0) if status else None
    return LogRecord(NOW - minutes(1), severity, "log", NEW, message, http)


def test_signals_count_dependency_failures_not_paths_or_chatter():
    found = fx.summarise_signals(
        [
            record("Stripe API timeout: POST /v1/charges did not answer within 10 s"),
            record("Firestore unavailable: deadline exceeded after 5000 ms"),
            record("slow request POST /pubsub took 2400 ms", "WARNING"),  # a path, not Pub/Sub
            record("stripe webhook received", "WARNING"),  # no failure
            record("Memory limit of 512 MiB exceeded with 530 MiB used."),
            record("Container terminated on signal 9.", "WARNING"),
            record("", "WARNING", status=429),
        ]
    )
    assert [(u.name, u.count, u.timeouts) for u in found.upstream] == [
        ("Firestore", 1, 1),
        ("Stripe", 1, 1),
    ]
    assert (found.oom, found.restarts, found.rate_limited) == (1, 1, 1)


# -- 6 input pattern --------------------------------------------------------------------------


def clustered(path_share_of_requests: float = 0.35) -> Report:
    records = errors_between(10, 0, 18, path="/marketplace", message="customer_id too long")
    records += [error_log(minutes(5), path="/pricing")]
    busy = int(100 * path_share_of_requests)
    paths = (("/marketplace", busy, 9), ("/pricing", 100 - busy, 1))
    return report(errors=errors(records), requests=requests(100, 3, by_path=paths))


def test_errors_clustered_on_one_path_are_a_crash_on_specific_input():
    match = triage_rules.input_pattern(clustered())
    assert match is not None and match.scenario == "6"
    assert "95% of errors with a path are on /marketplace" in match.reason
    assert "35% of requests" in match.reason and "customer_id too long" in match.reason


def test_errors_spread_over_paths_are_no_input_pattern():
    records = errors_between(10, 0, 10, path="/a") + errors_between(10, 0, 10, path="/b")
    assert triage_rules.input_pattern(report(errors=errors(records))) is None


def test_a_path_that_gets_most_traffic_says_nothing_about_input():
    assert triage_rules.input_pattern(clustered(path_share_of_requests=0.9)) is None


def test_dependency_failures_on_one_path_are_not_an_input_pattern():
    r = clustered()
    dependency = signals(upstream=[Upstream("Stripe", 15, 15, "Stripe timeout")])
    r = report(errors=r.errors, requests=r.requests, signals=dependency)
    assert triage_rules.input_pattern(r) is None


# -- 9 / 11 -----------------------------------------------------------------------------------


def test_a_429_spike_is_rate_limiting():
    match = triage_rules.rate_limited(report(signals=signals(rate_limited=90), requests=requests(100)))
    assert match is not None and match.scenario == "9" and "90 requests answered 429" in match.reason


@pytest.mark.parametrize(("count", "total"), [(10, 100), (25, 10_000)])
def test_few_429s_are_not_rate_limiting(count, total):
    r = report(signals=signals(rate_limited=count), requests=requests(total // 3))
    assert triage_rules.rate_limited(r) is None


def test_several_causes_at_once_are_cascading():
    deps = [Upstream(n, 6, 6, "timed out") for n in ("Stripe", "Firestore", "Pub/Sub")]
    ids = scenario_ids(report(signals=signals(upstream=deps)))
    assert set(ids) == {"4", "5", "7", "11"}


def test_two_causes_are_not_cascading_and_oom_with_restarts_count_once():
    deps = [Upstream("Stripe", 6, 6, "timed out")]
    ids = scenario_ids(report(signals=signals(oom=3, restarts=5, upstream=deps)))
    assert set(ids) == {"1B", "8", "4"}


def test_matches_come_most_confident_first():
    deps = [Upstream(n, 6, 6, "timed out") for n in ("Stripe", "Firestore", "Pub/Sub")]
    matches = triage(report(signals=signals(upstream=deps), requests=requests(100, 7))).matches
    assert [m.confidence for m in matches] == sorted((m.confidence for m in matches), reverse=True)


def test_healthy_findings_match_nothing():
    r = report(
        service=service(OLD),
        revisions=revisions(timedelta(hours=26)),
        errors=errors([error_log(minutes(3))]),
        requests=requests(100, 0),
        signals=signals(),
        health=health(200),
    )
    assert triage(r, "P3") == triage_rules.Triage(())


# -- severity hint ----------------------------------------------------------------------------


def test_p1_error_rate_on_a_p2_incident_suggests_p1():
    hint = triage(report(requests=requests(100, 38)), "P2").severity_hint
    assert hint is not None and (hint.current, hint.suggested) == ("P2", "P1")
    assert "38%" in hint.reason


@pytest.mark.parametrize(
    ("failed", "severity", "suggested"),
    [(38, "p1", None), (7, "P3", "P2"), (7, "P2", None), (2, "P4", None), (38, "", None)],
)
def test_severity_hint_only_when_the_numbers_say_worse(failed, severity, suggested):
    hint = triage_rules.severity_hint(report(requests=requests(100, failed)), severity)
    assert (hint.suggested if hint else None) == suggested


def test_no_request_numbers_no_severity_hint():
    assert triage_rules.severity_hint(report(health=health(503)), "P4") is None


# -- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("limit", "doubled"), [("512Mi", "1Gi"), ("1Gi", "2Gi"), ("768Mi", "1536Mi"), ("lots", None)])
def test_double_memory(limit, doubled):
    assert triage_rules.double_memory(limit) == doubled


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert (fx.percentile(values, 50), fx.percentile(values, 95)) == (50.0, 95.0)
    assert fx.percentile([], 95) is None


def test_summarise_requests_splits_recent_from_window():
    def req(ago: float, status: int, latency: float) -> LogRecord:
        http = HttpInfo("GET", "https://x/p", "/p", status, latency)
        return LogRecord(NOW - minutes(ago), "INFO", "requests", OLD, "", http, path="/p")

    records = [req(10, 500, 3000.0)] * 10 + [req(1, 200, 100.0)] * 30 + [req(2, 503, 50.0)] * 3
    found = fx.summarise_requests(records, NOW)
    assert (found.recent.total, found.recent.server_errors, found.recent.p95_ms) == (33, 3, 100.0)
    assert (found.window.total, found.window.server_errors, found.window.p95_ms) == (43, 13, 3000.0)


# -- scenario catalogue -----------------------------------------------------------------------


def test_catalogue_has_the_eleven_scenarios_with_checks_and_fixes():
    assert [s.number for s in scenarios.SCENARIOS] == list(range(1, 12))
    assert all(s.alert_trigger and s.first_checks and s.fixes and s.keywords for s in scenarios.SCENARIOS)


@pytest.mark.parametrize(
    ("query", "number"),
    [
        ("3", 3),
        ("1A", 1),
        ("scenario 7", 7),
        ("#9", 9),
        ("latency", 3),
        ("memory", 8),
        ("deploy", 1),
        ("Stripe", 4),
        ("firestore", 5),
        ("cascading", 11),
        ("ledger", 10),
    ],
)
def test_lookup_by_number_or_keyword(query, number):
    found = scenarios.lookup(query)
    assert found is not None and found.number == number


@pytest.mark.parametrize("query", ["", "12", "0", "banana"])
def test_lookup_of_nothing_known_is_none(query):
    assert scenarios.lookup(query) is None


def test_every_triage_scenario_is_in_the_catalogue():
    for match_id in ("1A", "1B", "1", "2", "3", "4", "5", "6", "7", "8", "9", "11"):
        assert scenarios.lookup(match_id) is not None


RUNBOOK = """# Our runbook
## Quick Reference
stuff
## SCENARIO 1: Service Down
Step one.
```markdown
## Incident: not a heading, inside a fence
```
Still scenario one.

---

## SCENARIO 2: Slow
Look at p95.
## Appendix
not part of scenario 2
"""


def test_team_runbook_is_split_at_scenario_headings_outside_code_fences(tmp_path):
    path = tmp_path / "runbook.md"
    path.write_text(RUNBOOK)
    sections = scenarios.load_runbook(path)
    assert sorted(sections) == [1, 2]
    assert sections[1].title == "Service Down"
    assert sections[1].text.startswith("## SCENARIO 1: Service Down")
    assert sections[1].text.endswith("Still scenario one.")
    assert sections[2].text == "## SCENARIO 2: Slow\nLook at p95."


def catalogue_runbook() -> str:
    """The built-in catalogue written out in the team runbook's layout: a preamble with level-2
    headings, one `## SCENARIO N: Title` section per scenario separated by rules, a post-mortem
    template whose `## Incident:` heading sits in a code fence, and appendices after scenario 11."""
    parts = [
        "# Incident Response Runbook",
        "## Quick Reference: Severity Levels",
        "| Level | Response |\n|---|---|\n| P1 | 5 min |",
        "## Universal Incident Response Flow (All Scenarios)",
        "DETECT, ASSESS, COMMUNICATE, INVESTIGATE & FIX, VERIFY, DOCUMENT.",
    ]
    for scenario in scenarios.SCENARIOS:
        parts += [
            "---",
            f"## SCENARIO {scenario.number}: {scenario.title}",
            f"**Alert Trigger:** {scenario.alert_trigger}",
            "### Immediate Actions",
            *(f"{i}. {check}" for i, check in enumerate(scenario.first_checks, 1)),
            "### Common Fixes",
            *(f"- {fix}" for fix in scenario.fixes),
        ]
        if scenario.number == 1:
            parts += [
                "### Step 6: Post-Mortem Template",
                "```markdown\n## Incident: Service Down\n**Severity:** P1\n```",
            ]
    parts += [
        "---",
        "## Quick Reference: Command Cheat Sheet",
        "gcloud run services describe",
        "## Post-Incident Review Template",
        "## Timeline",
    ]
    return "\n\n".join(parts) + "\n"


def test_a_runbook_in_the_teams_layout_splits_into_the_catalogues_eleven_sections(tmp_path):
    path = tmp_path / "runbook.md"
    path.write_text(catalogue_runbook(), encoding="utf-8")
    sections = scenarios.load_runbook(path)
    assert sorted(sections) == [s.number for s in scenarios.SCENARIOS] == list(range(1, 12))
    for scenario in scenarios.SCENARIOS:
        section = sections[scenario.number]
        assert section.title == scenario.title
        assert section.text.startswith(f"## SCENARIO {scenario.number}: {scenario.title}")
        assert scenario.alert_trigger in section.text
        assert all(check in section.text for check in scenario.first_checks)
        last = "```" if scenario.number == 1 else scenario.fixes[-1]
        assert section.text.endswith(last)  # the rule after it is not content
    assert "## Incident: Service Down" in sections[1].text  # fenced: not a section break
    assert "Cheat Sheet" not in sections[11].text and "Timeline" not in sections[11].text


def test_missing_team_runbook_raises(tmp_path):
    with pytest.raises(OSError):
        scenarios.load_runbook(tmp_path / "nope.md")


# -- rendering --------------------------------------------------------------------------------


def all_text(blocks: list[dict]) -> str:
    return str(blocks)


def test_summary_puts_numbers_first_and_offers_a_rollback_for_1a():
    r = bad_deploy_report()
    blocks = summary_blocks(r, triage(r, "P2"), incident_number=7)
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields[0].startswith("*5xx rate*") and "38%" in fields[0]
    assert any("*Serving*" in f and NEW in f and "live 8 min" in f for f in fields)
    button = next(b for b in blocks if b["type"] == "actions")["elements"][0]
    assert (button["action_id"], button["value"]) == (ROLLBACK_PROPOSE, f"7:{OLD}")
    assert "Scenario 1A" in all_text(blocks) and "/incident runbook 1" in all_text(blocks)
    assert "/incident severity p1" in all_text(blocks)


def test_no_rollback_button_without_a_bad_deployment():
    r = report(requests=requests(100, 7))
    blocks = summary_blocks(r, triage(r, "P2"), incident_number=7)
    assert not [b for b in blocks if b["type"] == "actions"]
    assert "Scenario 2" in all_text(blocks)


def test_log_text_is_escaped_and_blocks_stay_within_slack_limits():
    evil = "<!channel> & <@U123> " + "x" * 5000
    r = report(
        errors=errors(errors_between(4, 0, 12, message=evil)),
        signals=signals(upstream=[Upstream("Stripe", 9, 9, evil)]),
        health=HealthResult("https://svc.example/health", 500, 3.0, evil[:200]),
    )
    blocks = summary_blocks(r, triage(r, "P2"), incident_number=3)
    texts = detail_texts(r)
    rendered = all_text(blocks) + "".join(texts)
    assert "<!channel>" not in rendered and "<@U123>" not in rendered
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in rendered
    assert len(blocks) <= 50
    for block in blocks:
        for piece in [block.get("text")] + block.get("fields", []) + block.get("elements", []):
            if isinstance(piece, dict) and "text" in piece and isinstance(piece["text"], str):
                assert len(piece["text"]) <= 3000
    assert all(len(t) <= 3000 for t in texts)


def test_failed_sources_are_named_in_a_responders_words_not_urls_or_classes():
    r = report(
        service=service(),
        errors=SourceError(
            "error",
            "InternalServerError",
            "500 POST http://127.0.0.1:1/v2/entries:list",
            "Cloud Logging unavailable (500)",
        ),
        signals=SourceError("error", "InternalServerError", "500 ...", "Cloud Logging unavailable (500)"),
        requests=SourceError("timeout", "Timeout", "no answer within 2 s", "timed out after 2 s"),
    )
    blocks = summary_blocks(r, triage(r, "P2"), incident_number=1)
    [warning] = [b for b in blocks if b["type"] == "context" and "Not available" in str(b)]
    assert warning["elements"][0]["text"] == (
        ":warning: Not available: *Errors, Signals*: Cloud Logging unavailable (500) · *Requests*: timed out after 2 s"
    )
    text = all_text(blocks) + "".join(detail_texts(r))
    assert "InternalServerError" not in text and "http://" not in text and "entries:list" not in text
    assert "*Errors* (1.00 s)\n:warning: Cloud Logging unavailable (500)" in detail_texts(r)
