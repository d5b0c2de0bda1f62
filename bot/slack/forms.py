"""Opening a modal in time: Slack honours a trigger_id for 3 s after the click or command."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.core.errors import UsageError
from bot.slack.gateway import SlackGateway, error_code, rate_limited


def open_form_now(slack: SlackGateway, trigger_id: str, view: dict[str, Any], usage: str) -> None:
    """Open a modal before the ack, not on the work pool: a burst of slow work (diagnoses) on
    the pool must not make a form miss its 3 s. Slack refusing it, rate-limiting it or not
    answering within the request client's timeout is a usage reply, at once."""
    try:
        slack.open_view(trigger_id, view)
    except SlackApiError as exc:
        if rate_limited(exc):
            # Not retried: the Retry-After would outlast the trigger_id and the 3 s ack.
            raise UsageError(
                "Slack is busy (rate limited) and did not open the form. Try again in a few seconds, "
                "or type the command in full:",
                usage,
            ) from exc
        raise UsageError(
            f"Slack would not open the form (`{error_code(exc)}`). Type the command in full:", usage
        ) from exc
    except (OSError, SlackRequestError) as exc:  # a timeout or a dropped connection: not waited for
        raise UsageError(
            "Slack did not answer in time to open the form. Try again in a few seconds, or type the command in full:",
            usage,
        ) from exc
