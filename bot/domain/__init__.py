"""Pure rules and records, `now` passed in: no I/O, no clock, no Slack or Google types.

The config as dataclasses (`policy`), incidents and their lifecycle, escalation and reminders,
what is owed (`deliveries`: kinds, statuses, firings), on-call schedules, the permission
catalogue (`actions`, a leaf) and rule (`access`), alert routing, proposals, the service's
records (`service`), diagnose findings and triage, the store's row types (`records`), the
timeline, the post-mortem, stats. Imports only `bot.core`.
"""
