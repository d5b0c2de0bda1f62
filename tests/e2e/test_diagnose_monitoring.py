"""`/incident diagnose` reads Scenario 8 and 9 from Cloud Monitoring (memory utilisation,
instance count, request count by response code) over gRPC against the sandbox's strict
`ListTimeSeries`, and falls back to the log signals when Monitoring cannot answer."""

from __future__ import annotations

import re

from bot.sandbox.runner import SandboxedBot

MEMORY = "run.googleapis.com/container/memory/utilizations"
INSTANCES = "run.googleapis.com/container/instance_count"


def diagnose(running: SandboxedBot):
    running.command("declare p2 Checkout errors")
    room = running.slack.wait_for(lambda: running.bot.store.get(1).war_room_id)
    running.gcp.monitoring.requests.clear()
    running.command("diagnose", channel=room)
    return room, running.slack.wait_for_message(room, "Diagnosis ·", timeout=15)


def asked(running: SandboxedBot, metric: str) -> dict:
    [call] = [r.body for r in running.gcp.monitoring.requests if metric in r.body.get("filter", "")]
    return call


def test_memory_above_90_percent_from_cloud_monitoring_names_scenario_8():
    with SandboxedBot(preset="oom") as running:
        room, summary = diagnose(running)
        text = summary.all_text
        assert "Likely: Scenario 8" in text
        assert "Memory utilisation (p99 of instances)" in text and "above 90% for the last 5 min" in text
        assert "Source: Cloud Monitoring." in text
        memory = asked(running, MEMORY)
        assert memory["aggregation"]["perSeriesAligner"] == "ALIGN_PERCENTILE_99"
        assert memory["aggregation"]["crossSeriesReducer"] == "REDUCE_MAX"
        assert memory["aggregation"]["alignmentPeriod"] == "60s"
        assert 'resource.labels.service_name = "tai-autonomics"' in memory["filter"]
        assert asked(running, INSTANCES)["aggregation"]["perSeriesAligner"] == "ALIGN_MAX"
        running.slack.wait_for(lambda: len(running.slack.thread(room, summary.ts)) >= 7)
        thread = running.slack.thread(room, summary.ts)
        detail = next(m.text for m in thread if "Memory &amp; instances" in m.text or "Memory & instances" in m.text)
        assert "Memory utilisation (p99):" in detail and "Source: Cloud Monitoring, per minute." in detail


def test_a_traffic_spike_and_scaling_to_max_instances_from_cloud_monitoring_names_scenario_9():
    with SandboxedBot(preset="rate_limited") as running:
        _, summary = diagnose(running)
        text = summary.all_text
        assert "Likely: Scenario 9" in text
        # Minutes align to the time of the call, a few seconds after the preset's now: ±1 a minute.
        assert re.search(r"Requests (19|20|21)/min → (89|90|91)/min \(×4\.\d\)", text)
        assert "instances 2 → 10 (at max instances)" in text
        assert "Source: Cloud Monitoring." in text
        codes = asked(running, "run.googleapis.com/request_count")
        assert codes["aggregation"]["groupByFields"] == ["metric.labels.response_code"]


def test_cloud_monitoring_down_falls_back_to_the_logs_and_says_so():
    with SandboxedBot(preset="oom") as running:
        running.gcp.fail("monitoring", 503)
        _, summary = diagnose(running)
        text = summary.all_text
        assert "Likely: Scenario 8" in text
        assert "Source: Cloud Logging (Cloud Monitoring failed (UNAVAILABLE" in text
        assert "Memory utilisation (p99" not in text


def test_a_hanging_cloud_monitoring_falls_back_within_the_source_timeout():
    with SandboxedBot(preset="rate_limited") as running:
        running.gcp.hang("monitoring")
        _, summary = diagnose(running)
        text = summary.all_text
        assert "Likely: Scenario 9" in text and "Source: Cloud Logging (Cloud Monitoring timed out)" in text
        assert "Not available" not in text
        running.gcp.heal("monitoring")


def test_the_emulator_refuses_what_the_api_refuses():
    from bot.sandbox.cloud_monitoring import ListError, MonitoringEmulator

    emulator = MonitoringEmulator()
    base = {
        "name": "projects/demo-project",
        "interval": {"startTime": "2026-01-25T14:25:00Z", "endTime": "2026-01-25T14:40:00Z"},
    }

    def refused(metric: str, aligner: str, reducer: str = "REDUCE_NONE", **extra: object) -> str:
        body = {
            **base,
            "filter": f'metric.type = "{metric}"',
            "aggregation": {"alignmentPeriod": "60s", "perSeriesAligner": aligner, "crossSeriesReducer": reducer},
            **extra,
        }
        try:
            emulator.list_time_series(body)
        except ListError as exc:
            return exc.code
        return "OK"

    assert refused(MEMORY, "ALIGN_MAX") == "INVALID_ARGUMENT"  # a DISTRIBUTION has no max
    assert refused(MEMORY, "ALIGN_DELTA", "REDUCE_MAX") == "INVALID_ARGUMENT"
    assert refused(MEMORY, "ALIGN_MEAN", "REDUCE_MAX") == "INVALID_ARGUMENT"  # MEAN is for numeric values
    assert refused(MEMORY, "ALIGN_PERCENTILE_99", "REDUCE_MAX") == "OK"
    assert refused(INSTANCES, "ALIGN_DELTA", "REDUCE_SUM") == "INVALID_ARGUMENT"  # a GAUGE has no delta
    assert refused(INSTANCES, "ALIGN_PERCENTILE_99") == "INVALID_ARGUMENT"
    assert refused(INSTANCES, "ALIGN_MAX", "REDUCE_SUM") == "OK"
    body = {**base, "filter": f'metric.type = "{INSTANCES}"', "aggregation": {"perSeriesAligner": "ALIGN_MAX"}}
    try:
        emulator.list_time_series(body)
        raise AssertionError("an aligner without an alignment period was accepted")
    except ListError as exc:
        assert exc.code == "INVALID_ARGUMENT"
