"""The bot's own numbers, for Prometheus at `GET /metrics`.

Counters and histograms are process-wide (one bot per process in production), declared once
here and incremented where the thing happens. Gauges the store knows are `bot.app.observability`'s.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COMMANDS = Counter(
    "incident_bot_commands",
    "Slash commands, button clicks and form submissions handled, by verb (or action) and outcome.",
    ["verb", "outcome"],  # outcome: ok | usage_error | forbidden | error
)
DELIVERIES_SENT = Counter(
    "incident_bot_deliveries_sent",
    "Messages the bot owed that Slack (or the status page) accepted, by kind (page, fyi, reminder...).",
    ["kind"],
)
DELIVERIES_SUPERSEDED = Counter(
    "incident_bot_deliveries_superseded",
    "Edits not sent because a later edit of the same message was owed or sent (they piled up), by kind.",
    ["kind"],
)
DELIVERIES_MERGED = Counter(
    "incident_bot_deliveries_merged",
    "Lines owed to one thread at once, sent within another line's message instead of their own, by kind.",
    ["kind"],
)
SLACK_API_ERRORS = Counter(
    "incident_bot_slack_api_errors",
    "Slack Web API calls that failed after retries, by method and error code.",
    ["method", "code"],
)
DIAGNOSE_SECONDS = Histogram(
    "incident_bot_diagnose_seconds",
    "Time from a diagnose request to its summary.",
    buckets=(0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
)
ROLLBACK_SECONDS = Histogram(
    "incident_bot_fix_seconds",
    "Time from a confirmed rollback or scale change to its verified outcome.",
    ["kind", "outcome"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
TIMER_LAG = Histogram(
    "incident_bot_timer_lag_seconds",
    "How late a timer (page, reminder, nudge) fired after the moment it was due.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
