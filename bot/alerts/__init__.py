"""Alerts in: the webhooks (`webhook`), the monitoring systems' payloads read into `Alert`s
(`payloads`), and what each alert becomes in Slack: an incident, a proposal, lines (`intake`).
"""
