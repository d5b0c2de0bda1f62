"""Block Kit for `/incident diagnose`: one compact summary, and one thread reply per source.

Pure functions of a `Report` and its `Triage`. The summary puts numbers first (5xx rate,
p95, health, serving revision and its age), then the likely runbook scenario with its reason,
and a Roll back button when the evidence says bad deployment. Text that came from logs, the
health body or the API is escaped for mrkdwn so a log line cannot ping a channel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.mrkdwn import escape
from bot.domain.capacity import CapacityFinding, series_text
from bot.domain.findings import (
    RECENT,
    SOURCE_NAMES,
    WINDOW,
    ErrorsFinding,
    Report,
    RequestsFinding,
    RevisionsFinding,
    ServiceFinding,
    SignalsFinding,
    SourceResult,
)
from bot.domain.service import HealthResult
from bot.domain.triage import Triage, percent_text, span_text
from bot.slack.ids import ROLLBACK_PROPOSE

Block = dict[str, Any]
SECTION_MAX = 3000
FIELD_MAX = 2000
HEADER_MAX = 150
BLOCKS_MAX = 50
CONTEXT_ELEMENTS_MAX = 10
_LABELS = {
    "service": "Service",
    "revisions": "Revisions",
    "errors": "Errors",
    "requests": "Requests",
    "signals": "Signals",
    "capacity": "Memory & instances",
    "health": "Health",
}


def code(text: str) -> str:
    """An inline code span of untrusted text (a backtick inside would end the span)."""
    safe = escape(text.replace("`", "'"))
    return f"`{safe}`" if text else ""


def clip(text: str, limit: int = SECTION_MAX) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # never split an escape such as &amp;
    return cut + "…"


# -- the summary ------------------------------------------------------------------------------


def summary_blocks(report: Report, triage: Triage, incident_number: int | None = None) -> list[Block]:
    """The one summary message: numbers, likely scenario, buttons, failed sources."""
    blocks: list[Block] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip(_title(report), HEADER_MAX)},
        },
        {"type": "section", "fields": [_field(f) for f in _headline_fields(report)]},
    ]
    likely = triage.likely
    if likely:
        text = (
            f"*Likely: Scenario {escape(likely.scenario)}, {escape(likely.title)}* "
            f"({likely.confidence_label} confidence)\n{escape(likely.reason)}"
        )
        if likely.next_step:
            text += f"\n_Next:_ {escape(likely.next_step)}"
        blocks.append(_section(text))
    else:
        blocks.append(_section("*No runbook scenario matches* the numbers above."))
    others = [f"*{escape(m.scenario)}* {escape(m.title)} ({m.confidence_label})" for m in triage.matches[1:]]
    if others:
        blocks.append(_context("Also: " + " · ".join(others)))
    hint = triage.severity_hint
    if hint:
        blocks.append(
            _section(
                f":warning: *Severity:* {escape(hint.reason)} This incident is {hint.current}; "
                f"consider `/incident severity {hint.suggested.lower()}`."
            )
        )
    if report.failed:
        blocks.append(_context(f":warning: Not available: {_failures(report.failed)}"))
    actions = _actions(triage, incident_number)
    if actions:
        blocks.append({"type": "actions", "elements": actions})
    blocks.append(_context(*_footer(report, triage)))
    return blocks[:BLOCKS_MAX]


def summary_text(report: Report, triage: Triage) -> str:
    """Notification fallback for the summary (what a phone or a screen reader shows)."""
    likely = triage.likely
    verdict = f"likely scenario {likely.scenario}, {likely.title}" if likely else "no scenario"
    return escape(f"Diagnosis of {report.target.name}: {verdict}")


def _title(report: Report) -> str:
    return f"Diagnosis · {report.target.name} ({report.target.region})"


def _headline_fields(report: Report) -> list[str]:
    requests, health = report.requests, report.health
    fields = []
    minutes = int(RECENT.total_seconds() // 60)
    if requests and requests.recent.total:
        stats = requests.recent
        rate = stats.error_rate or 0.0
        fields.append(f"*5xx rate* ({minutes} min)\n{percent_text(rate)} · {stats.server_errors}/{stats.total}")
        p95 = f"{stats.p95_ms:,.0f} ms" if stats.p95_ms is not None else "n/a"
        p50 = f" · p50 {stats.p50_ms:,.0f} ms" if stats.p50_ms is not None else ""
        fields.append(f"*p95 latency* ({minutes} min)\n{p95}{p50}")
    else:
        fields.append(f"*5xx rate*\n{_missing(report, 'requests', 'no requests')}")
        fields.append(f"*p95 latency*\n{_missing(report, 'requests', 'no requests')}")
    if health:
        mark = ":white_check_mark:" if 200 <= health.status < 300 else ":x:"
        fields.append(f"*Health*\n{mark} {health.status} · {health.latency_ms:,.0f} ms")
    else:
        fields.append(f"*Health*\n:x: {_missing(report, 'health', 'not checked')}")
    serving = report.serving
    if serving:
        age = f" · live {span_text(serving.age)}" if serving.age is not None else ""
        fields.append(f"*Serving*\n{code(serving.revision)} {serving.percent}%{age}")
    else:
        fields.append(f"*Serving*\n{_missing(report, 'service', 'unknown')}")
    errors = report.errors
    window = int(WINDOW.total_seconds() // 60)
    if errors:
        more = "+" if errors.sampled else ""
        fields.append(f"*Errors* ({window} min)\n{errors.count}{more} entries")
    service = report.service
    if service:
        fields.append(f"*Service*\n{_service_state(service)}")
    return fields


def _service_state(service: ServiceFinding) -> str:
    state = service.state
    if service.rollout_pending:
        return f":hourglass: rolling out {code(state.latest_created_revision)}"
    if state.ready is True:
        return ":white_check_mark: Ready"
    if state.ready is False:
        return f":x: not Ready: {escape(state.ready_message or 'no message')}"
    return ":hourglass: reconciling"


def _actions(triage: Triage, incident_number: int | None) -> list[dict[str, Any]]:
    rollback = triage.rollback
    if not rollback or not rollback.rollback_revision or incident_number is None:
        return []
    revision = rollback.rollback_revision
    return [
        {
            "type": "button",
            "text": {"type": "plain_text", "text": clip(f"Roll back to {revision}", 75)},
            "action_id": ROLLBACK_PROPOSE,
            "value": f"{incident_number}:{revision}",
            "style": "danger",
        }
    ]


def _footer(report: Report, triage: Triage) -> list[str]:
    parts = []
    numbers = sorted({m.runbook_number for m in triage.matches[:3]})
    if numbers:
        commands = ", ".join(f"`/incident runbook {n}`" for n in numbers)
        parts.append(f":book: Runbook: {commands}")
    timing = " · ".join(f"{r.name} {r.elapsed_s:.1f} s" for r in report.results if r.started_s is not None)
    parts.append(f"Checked in {report.elapsed_s:.1f} s ({timing}). Details in the thread.")
    return parts


# -- the thread: one message per source ------------------------------------------------------


def detail_texts(report: Report) -> list[str]:
    """One mrkdwn text per source, in a fixed order, each within a section's limit."""
    texts = []
    for name in SOURCE_NAMES:
        result = report.result(name)
        if result is None:
            continue
        label = _LABELS.get(name, name)
        head = f"*{label}* ({result.elapsed_s:.2f} s)"
        if not result.ok:
            texts.append(clip(f"{head}\n:warning: {_failure(result)}"))
            continue
        body = _DETAIL[name](report, result.finding)
        texts.append(clip(f"{head}\n{body}"))
    return texts


def _service_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, ServiceFinding)
    state = finding.state
    traffic = ", ".join(
        f"{code(t.revision)} {t.percent}%"
        + (" (latest)" if t.latest else "")
        + (f" tag {escape(t.tag)}" if t.tag else "")
        for t in state.traffic
    )
    lines = [
        f"{_service_state(finding)} · {escape(state.url) or 'no URL'}",
        f"Traffic: {traffic or 'none'}",
        f"Latest created {code(state.latest_created_revision)}, latest ready {code(state.latest_ready_revision)}",
        f"Memory limit {escape(state.memory_limit or 'default')}, max instances {state.max_instances or 'default'}",
    ]
    return "\n".join(lines)


def _revisions_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, RevisionsFinding)
    serving = report.serving
    lines = []
    for revision in finding.revisions:
        ready = {True: "Ready", False: "failed", None: "pending"}[revision.ready]
        created = _ago(report.now, revision.created_at)
        image = revision.image.rsplit("/", 1)[-1]
        mark = " ← serving" if serving and serving.revision == revision.name else ""
        lines.append(f"• {code(revision.name)} created {created}, {ready}, {code(image)}{mark}")
    if serving and serving.age is not None:
        lines.append(f"Serving revision went live {span_text(serving.age)} ago.")
    healthy = report.last_healthy_revision
    if healthy:
        lines.append(f"Last healthy revision before it: {code(healthy)}")
    return "\n".join(lines) or "No revisions."


def _errors_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, ErrorsFinding)
    window = int(WINDOW.total_seconds() // 60)
    more = " (more than were read)" if finding.sampled else ""
    lines = [f"{finding.count} ERROR-or-worse entries in {window} min{more}."]
    if finding.times:
        lines.append(f"First {_ago(report.now, finding.times[0])}, last {_ago(report.now, finding.times[-1])}.")
    if finding.top_messages:
        lines.append("Top messages:")
        lines += [f"• {n}× {code(message)}" for message, n in finding.top_messages]
    for label, rows in (
        ("By path", finding.by_path),
        ("By error_code", finding.by_error_code),
        ("By revision", finding.by_revision),
    ):
        if rows:
            lines.append(f"{label}: " + ", ".join(f"{code(k)} {n}" for k, n in rows))
    return "\n".join(lines)


def _requests_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, RequestsFinding)
    lines = []
    for label, stats in (
        (f"Last {int(RECENT.total_seconds() // 60)} min", finding.recent),
        (f"Last {int(WINDOW.total_seconds() // 60)} min", finding.window),
    ):
        p95 = f"{stats.p95_ms:,.0f}" if stats.p95_ms is not None else "n/a"
        p50 = f"{stats.p50_ms:,.0f}" if stats.p50_ms is not None else "n/a"
        rate = percent_text(stats.error_rate) if stats.error_rate is not None else "n/a"
        lines.append(
            f"{label}: {stats.total} requests, 5xx {rate} ({stats.server_errors}), "
            f"429: {stats.rate_limited}, p50 {p50} ms, p95 {p95} ms"
        )
    if finding.by_path:
        top = finding.by_path[:5]
        lines.append("Busiest paths: " + ", ".join(f"{code(p)} {n} ({e} 5xx)" for p, n, e in top))
    if finding.sampled:
        lines.append("_Sampled: only the newest request logs were read._")
    return "\n".join(lines)


def _signals_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, SignalsFinding)
    lines = [
        f"Memory limit exceeded: {finding.oom}" + (f", e.g. {code(finding.oom_sample)}" if finding.oom_sample else ""),
        f"Container restarts: {finding.restarts}"
        + (f", e.g. {code(finding.restart_sample)}" if finding.restart_sample else ""),
        f"429 answers: {finding.rate_limited}",
    ]
    for upstream in finding.upstream:
        lines.append(
            f"{escape(upstream.name)}: {upstream.count} failures ({upstream.timeouts} timeouts), "
            f"e.g. {code(upstream.sample)}"
        )
    if not finding.upstream:
        lines.append("No failures naming Pub/Sub, Firestore or Stripe.")
    return "\n".join(lines)


def _capacity_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, CapacityFinding)
    if not finding.from_monitoring:
        return (
            f"{escape(finding.note or 'Cloud Monitoring not read')}: memory and traffic from Cloud Logging (Signals)."
        )
    memory = [p.value for p in finding.memory]
    instances = [p.value for p in finding.instances]
    requests = [p.value for p in finding.requests]
    lines = [
        f"Memory utilisation (p99): {series_text(memory, percent=True)}",
        f"Instances: {series_text(instances)}",
        f"Requests/min: {series_text(requests)}, 429 answers: {sum(p.value for p in finding.rate_limited):,.0f}",
        "Source: Cloud Monitoring, per minute.",
    ]
    return "\n".join(lines)


def _health_detail(report: Report, finding: Any) -> str:
    assert isinstance(finding, HealthResult)
    body = finding.body.replace("```", "'''")
    block = f"\n```{escape(body)}```" if body else ""
    return f"{escape(finding.url)} answered {finding.status} in {finding.latency_ms:,.0f} ms{block}"


_DETAIL = {
    "service": _service_detail,
    "revisions": _revisions_detail,
    "errors": _errors_detail,
    "requests": _requests_detail,
    "signals": _signals_detail,
    "capacity": _capacity_detail,
    "health": _health_detail,
}


# -- small helpers ----------------------------------------------------------------------------


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def _field(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, FIELD_MAX)}


def _context(*texts: str) -> Block:
    elements = [{"type": "mrkdwn", "text": clip(t)} for t in texts[:CONTEXT_ELEMENTS_MAX]]
    return {"type": "context", "elements": elements}


def _failure(result: SourceResult) -> str:
    """The failure in a responder's words ("Cloud Logging unavailable (500)"), never a URL."""
    return escape(str(result.error)) if result.error else ""


def _failures(failed: tuple[SourceResult, ...]) -> str:
    """`*Errors, Requests*: Cloud Logging unavailable (500) · *Health*: timed out after 8 s`."""
    grouped: dict[str, list[str]] = {}
    for result in failed:
        grouped.setdefault(_failure(result), []).append(_LABELS.get(result.name, result.name))
    return " · ".join(f"*{', '.join(labels)}*: {words}" for words, labels in grouped.items())


def _missing(report: Report, source: str, otherwise: str) -> str:
    result = report.result(source)
    if result is not None and result.error is not None:
        return _failure(result)
    return otherwise


def _ago(now: datetime, moment: datetime | None) -> str:
    return f"{span_text(now - moment)} ago" if moment else "at an unknown time"
