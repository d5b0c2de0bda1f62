"""What a sender raises to tell the dispatcher how a delivery failed."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError


class Undeliverable(Exception):
    """It cannot go yet (nowhere to post, nobody to reach): retried with backoff."""


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
    """A rate limit or a server error, that slack_sdk's own retries did not get past."""
    status = getattr(exc.response, "status_code", 200)
    return status == 429 or status >= 500
