"""Opening a modal in time: Slack honours a trigger_id for 3 s after the click or command."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError

from bot.core.errors import UsageError
from bot.slack.gateway import SlackGateway, error_code


def open_form_now(slack: SlackGateway, trigger_id: str, view: dict[str, Any], usage: str) -> None:
    """Open a modal before the ack, not on the work pool: a burst of slow work (diagnoses) on
    the pool must not make a form miss its 3 s. Slack refusing it is a usage reply."""
    try:
        slack.open_view(trigger_id, view)
    except SlackApiError as exc:
        raise UsageError(
            f"Slack would not open the form (`{error_code(exc)}`). Type the command in full:", usage
        ) from exc
