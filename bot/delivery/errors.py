"""What a sender raises to tell the dispatcher how a delivery failed."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.slack.gateway import rate_limited


class Undeliverable(Exception):
    """It cannot go yet (nowhere to post, nobody to reach): retried with backoff."""


class NotPlacedYet(Undeliverable):
    """Nowhere to post yet: the announcement or war room is still being made. Retried with
    backoff, and at once when set-up has made the place (`Store.retry_unplaced`)."""


class RetryLater(Exception):
    """The receiver asked to be tried again, at `after` seconds when it said so (`Retry-After`)."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Refused(Exception):
    """The receiver refused the call itself: the same call would be refused again, so it is
    cancelled, and `say` is told in the war room."""

    def __init__(self, reason: str, say: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.say = say


def transient(exc: SlackApiError) -> bool:
    """A rate limit (which the delivery loop waits out itself) or a server error that slack_sdk's
    own retries did not get past: the same call may well succeed later."""
    status = getattr(exc.response, "status_code", 200)
    return rate_limited(exc) or status >= 500
