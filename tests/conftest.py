"""Shared fixtures: the real bot served over HTTP, Slack played by the sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from bot.sandbox.gcp_presets import GcpSandbox
from bot.sandbox.runner import BOT_TOKEN, SandboxedBot
from bot.sandbox.slack import SlackSandbox

# The session's throwaway PostgreSQL server (postgres_server, pg_url).
pytest_plugins = ["tests.pg"]

# The runbook's policies with every duration shortened, so escalation is observable in seconds.
FAST_CONFIG = """
channel: incident-response
war_room: {severities: [P1, P2], prefix: inc}
people:
  oncall_primary: [U0PRIMARY]
  oncall_secondary: [U0SECOND]
  vp_product: [vp@example.com]
  ceo: [U0CEO]
  tech_lead: [U0LEAD]
  support: [U0SUPPORT]
  nobody_email: [ghost@example.com]
severities:
  P1:
    label: Critical
    description: Service down
    ack_within: 3s
    fix_within: 30s
    update_every: 60s
    notify: [vp_product, tech_lead]
    escalation:
      - {after: 0s, page: [oncall_primary]}
      - {after: 2s, page: [oncall_secondary]}
      - {after: 4s, page: [vp_product]}
      - {after: 6s, page: [ceo]}
  P2:
    label: High
    ack_within: 60s
    update_every: 60s
    notify: [vp_product]
    escalation:
      - {after: 0s, page: [oncall_primary]}
      - {after: 2s, page: [oncall_secondary]}
      - {after: 30s, page: [vp_product]}
  P3: {label: Medium, ack_within: 1h, escalation: [{after: 0s, page: [support]}]}
  P4: {label: Low, ack_within: 1d, escalation: [{after: 0s, page: [support]}]}
service: {project: demo-project, region: us-central1, name: tai-autonomics, health_url: "http://127.0.0.1:9/health"}
rollback: {allowed: [incident_commander, oncall_primary, tech_lead]}
"""


@pytest.fixture
def bot() -> Iterator[SandboxedBot]:
    """The bot with the built-in (runbook) config: nothing escalates within a test's lifetime."""
    with SandboxedBot() as running:
        yield running
        assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"


@pytest.fixture
def fast_bot() -> Iterator[SandboxedBot]:
    """The bot with second-scale escalation delays."""
    with SandboxedBot(config_text=FAST_CONFIG) as running:
        yield running
        assert not running.slack.refusals(), f"Slack refused: {running.slack.refusals()}"


@pytest.fixture
def sandbox() -> Iterator[SlackSandbox]:
    """The Slack Web API emulator alone; it must have refused nothing the test did not expect."""
    with SlackSandbox() as world:
        yield world
        assert not world.errors, world.errors[-1]


@pytest.fixture
def client(sandbox: SlackSandbox) -> WebClient:
    """The real slack_sdk client, pointed at `sandbox`."""
    return WebClient(token=BOT_TOKEN, base_url=sandbox.api_url)


@pytest.fixture(scope="module")
def running() -> Iterator[GcpSandbox]:
    """The Cloud Run, Cloud Logging and health emulators, started once per test module."""
    with GcpSandbox() as sandbox:
        yield sandbox
