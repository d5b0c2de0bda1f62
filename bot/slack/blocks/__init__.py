"""Block Kit builders, one module per surface: `incident` (announcement, pages, reminders, forms),
`alerts` (proposals, alert lines), `changes` (rollback and scale proposals), `diagnose` (the
summary and its thread), `review` (resolve form, all-clear, timeline, stats). Pure functions of
domain state; they never call Slack.
"""
