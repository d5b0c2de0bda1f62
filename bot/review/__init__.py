"""The end of an incident and after: post-mortem drafts uploaded and reminded, pinned messages into
the timeline, and the review printed by the CLI (`incident-bot postmortem`, `stats`).
"""
