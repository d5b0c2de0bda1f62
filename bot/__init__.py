"""Incident bot: runs the incident-response runbook from Slack."""

__version__ = "0.1.0"
