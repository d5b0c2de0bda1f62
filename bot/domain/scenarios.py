"""The runbook's eleven incident scenarios as data, in the project's own words.

`SCENARIOS` is what `/incident runbook` lists and what triage links to: for each scenario the
alert that usually fires, what to check first, how it is usually fixed, and keywords people
type (`latency`, `memory`, `deploy`). `lookup()` finds one by number or keyword.
`load_runbook()` reads a team's own markdown runbook instead (config `runbook.path`), split at
its `## SCENARIO N: Title` headings, so a team can show its full text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    alert_trigger: str
    first_checks: tuple[str, ...]
    fixes: tuple[str, ...]
    keywords: tuple[str, ...]


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        1,
        "Service completely down (HTTP 5xx)",
        "More than 10% of requests fail for 5 minutes, or availability drops below 99%.",
        (
            "Describe the Cloud Run service: is it Ready, which revision takes the traffic?",
            "Read the last errors in Cloud Logging.",
            "Call the health endpoint yourself.",
            "Sort the cause: a deploy in the last minutes (A), restarts or memory (B), "
            "a dependency (C), or one kind of request crashing it (D).",
        ),
        (
            "A, bad deploy: move 100% of traffic back to the last healthy revision.",
            "B, crashes: raise the memory limit for now (512Mi to 1Gi), then hunt the leak.",
            "C, dependency: follow scenario 7.",
            "D, bad input: follow scenario 6.",
            "Confirm: health answers 200 within 10 s, errors under 1%, p95 back under 500 ms.",
        ),
        ("down", "outage", "500", "5xx", "deploy", "rollback", "crash", "restart", "unavailable"),
    ),
    Scenario(
        2,
        "High error rate while the service is up (5-10%)",
        "Between 5% and 10% of requests fail for 10 minutes.",
        (
            "Which endpoint fails? Group the errors by path.",
            "Which error? Group them by error code.",
            "Random across endpoints points at a flaky dependency or memory; one endpoint at bad input or a race.",
        ),
        (
            "Timeouts to Pub/Sub: check quotas and backlog; lengthen the processing timeout.",
            "Out-of-memory errors: restart the instances, then review for leaks.",
            "Rate-limit errors: raise max instances; add per-key quotas later.",
            "Confirm: the error rate falls below 1% within 5 minutes.",
        ),
        ("errors", "error rate", "partial", "degraded", "flaky", "intermittent"),
    ),
    Scenario(
        3,
        "Response time spike (p95 over 1000 ms)",
        "p95 latency above 1000 ms for 5 minutes.",
        (
            "Is every endpoint slow or just one?",
            "Is the service at its CPU or memory limit?",
            "Trace or log slow requests: which call inside them takes the time (Firestore, Pub/Sub, Stripe)?",
        ),
        (
            "Slow Firestore query: add the missing index, narrow the query, or page it; cache for a minute meanwhile.",
            "CPU-bound: give the service more memory (which also brings CPU) and instances.",
            "Slow Stripe: put a timeout on the call and queue the charge for a retry.",
            "Confirm: p95 back near its 500 ms baseline; a test call returns in under 1 s.",
        ),
        ("latency", "slow", "p95", "timeout", "performance"),
    ),
    Scenario(
        4,
        "Payment processing failures (Stripe)",
        "More than 10 payment failures an hour, or Stripe answering 5xx.",
        (
            "Look at Stripe's status page.",
            "If Stripe is fine, read our errors mentioning Stripe: connection refused, 401 "
            "(wrong key), 429 (their rate limit) or 503 (their outage).",
        ),
        (
            "Stripe down: degrade gracefully, accept sign-ups, queue charges and retry them, "
            "say so on the status page.",
            "Wrong API key: put the right one in Secret Manager and redeploy.",
            "Rate-limited by Stripe: back off exponentially and use idempotency keys.",
            "Confirm: a test payment succeeds and shows in the Stripe dashboard.",
        ),
        ("stripe", "payment", "payments", "billing", "charge"),
    ),
    Scenario(
        5,
        "Database (Firestore) unavailable",
        "Firestore errors spike, or writes take longer than 5000 ms.",
        (
            "Is the Firestore database running?",
            "Are the service's credentials valid, and does its service account still hold the Datastore User role?",
            "Is the Firestore API enabled, and is a quota exhausted?",
        ),
        (
            "Firestore down: keep serving, buffer writes in memory and flush them on recovery.",
            "Permissions: grant the role back, then restart the service.",
            "Quota: batch writes, ask for more quota.",
            "Confirm: a write succeeds and shows up; query latency is under 1000 ms.",
        ),
        ("firestore", "database", "db", "datastore", "storage"),
    ),
    Scenario(
        6,
        "Crash on specific input (some requests get 500)",
        "500s spike and the failing requests share a pattern in their parameters.",
        (
            "List the failing requests with their path, method and customer.",
            "What do they have in common: very long, odd characters, nulls, negative numbers?",
        ),
        (
            "Reproduce locally with the same input, find the stack trace.",
            "Validate that input and answer 400 instead of crashing; test; deploy.",
            "Confirm: the same request now gets a 400 with a clear message.",
        ),
        ("input", "payload", "validation", "specific request", "pattern", "customer"),
    ),
    Scenario(
        7,
        "External dependency unavailable (Pub/Sub)",
        "Pub/Sub subscription errors spike, or messages go unacknowledged.",
        (
            "Describe the subscription: its state, backlog and oldest unacked message.",
            "Check the dead-letter queue, if there is one.",
            "Are our instances receiving and processing messages at all?",
        ),
        (
            "Subscription in error: give the service account the subscriber role back.",
            "Backlog growing: speed up processing or raise max instances.",
            "Pub/Sub down: stop pulling, queue locally, process once it recovers.",
            "Confirm: a test message is processed and the backlog stays near zero.",
        ),
        ("pubsub", "pub/sub", "queue", "messages", "backlog", "dependency", "subscription"),
    ),
    Scenario(
        8,
        "High memory use / OOM kill",
        "Memory above 90% of the limit for 5 minutes.",
        (
            "Is memory climbing steadily (a leak) or flat and high (too small a limit)?",
            "Are containers restarting? Look for 'memory limit exceeded' in the logs.",
        ),
        (
            "Leak: restart instances for relief; look for unbounded tables, queues and caches.",
            "Too small: raise the memory limit (512Mi to 1Gi).",
            "Confirm: memory stays flat for 5 minutes and no new restarts appear.",
        ),
        ("memory", "oom", "out of memory", "leak", "restart", "restarts", "killed"),
    ),
    Scenario(
        9,
        "Rate limiting / DDoS",
        "More than 1000 requests a second, or a spike of 429 answers.",
        (
            "Where do the requests come from: many clients or a few IPs and one user agent?",
            "Is it a real surge (launch, press) or an attack?",
        ),
        (
            "Real surge: raise min and max instances, scale back down afterwards.",
            "Attack: block the offending IPs (Cloud Armor), enforce per-key rate limits.",
            "Confirm: request rate back to its baseline, test calls get 200, errors under 1%.",
        ),
        ("429", "rate limit", "ddos", "traffic", "spike", "attack", "throttle"),
    ),
    Scenario(
        10,
        "Payment receipt ledger corruption",
        "A receipt hash fails to verify, or duplicate receipts appear.",
        (
            "Export a backup before touching anything.",
            "Verify the receipt chain: each receipt's previous hash must match.",
            "Look for duplicate receipt ids.",
        ),
        (
            "Duplicates: remove them, or restore from the last good backup.",
            "Broken chain: find where it breaks and why (bug or tampering); restore, fix, "
            "and notify customers if their data was affected.",
            "Confirm: verification passes and revenue matches the Stripe balance.",
        ),
        ("ledger", "receipt", "receipts", "hash", "duplicate", "corruption", "audit"),
    ),
    Scenario(
        11,
        "Cascading failures (several systems down)",
        "Alerts of several severities fire at the same time.",
        (
            "Which failure came first? Order the errors by time and work forward.",
            "Usually one slow dependency makes requests pile up until memory runs out.",
        ),
        (
            "Stop the cascade: isolate the failing dependency behind a circuit breaker.",
            "Degrade gracefully: cached answers, queued work, no timeouts.",
            "Recover in stages: service, then reads, writes, Pub/Sub, payments; stop at the first step that fails.",
            "Confirm for 10 minutes: errors under 1%, memory flat, latency under 500 ms.",
        ),
        ("cascade", "cascading", "everything", "multiple", "several", "all down"),
    ),
)

_BY_NUMBER = {s.number: s for s in SCENARIOS}
_NUMBER = re.compile(r"(?:scenario\s*)?#?(\d{1,2})[a-d]?", re.I)


def get(number: int) -> Scenario | None:
    return _BY_NUMBER.get(number)


def lookup(query: str) -> Scenario | None:
    """Find one scenario by number (`3`, `1A`, `scenario 7`) or by keyword/title word."""
    text = query.strip().lower()
    if not text:
        return None
    number = _NUMBER.fullmatch(text)
    if number:
        return get(int(number.group(1)))
    found = search(text)
    return found[0] if found else None


def search(query: str) -> list[Scenario]:
    """Scenarios whose keywords or title contain the query, best match first."""
    text = query.strip().lower()
    if not text:
        return []
    scored = []
    for scenario in SCENARIOS:
        score = 0
        if text in scenario.keywords:
            score = 3
        elif any(text in keyword or keyword in text for keyword in scenario.keywords):
            score = 2
        elif text in scenario.title.lower():
            score = 1
        if score:
            scored.append((-score, scenario.number, scenario))
    return [s for *_, s in sorted(scored, key=lambda t: (t[0], t[1]))]


@dataclass(frozen=True)
class RunbookSection:
    number: int
    title: str
    text: str  # the section's markdown, heading included


_HEADING = re.compile(r"^##\s+SCENARIO\s+(\d+)\s*[:.\-–—]\s*(.+?)\s*$", re.I)
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_runbook(markdown: str) -> dict[int, RunbookSection]:
    """Split a markdown runbook at its `## SCENARIO N: Title` headings.

    A section runs to the next level-2 heading; headings inside fenced code blocks (the
    post-mortem template has some) do not count.
    """
    sections: dict[int, RunbookSection] = {}
    current: tuple[int, str] | None = None
    lines: list[str] = []
    in_fence = False

    def close() -> None:
        if current is not None:
            number, title = current
            body = list(lines)
            while body and body[-1].strip() in ("", "---", "***", "___"):
                body.pop()  # the horizontal rule that separates sections is not content
            sections[number] = RunbookSection(number, title, "\n".join(body))

    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and line.startswith("## "):
            close()
            heading = _HEADING.match(line)
            current = (int(heading.group(1)), heading.group(2)) if heading else None
            lines = []
        if current is not None:
            lines.append(line)
    close()
    return sections


def load_runbook(path: str | Path) -> dict[int, RunbookSection]:
    """Read a team's markdown runbook; a missing or unreadable file raises OSError."""
    return parse_runbook(Path(path).read_text(encoding="utf-8"))
