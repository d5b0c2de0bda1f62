"""Making user text safe and the right size for Slack's mrkdwn (see `bot.text`, which does it)."""

from bot.text import TRUNCATION_MARK, escape, for_slack, truncate

__all__ = ["TRUNCATION_MARK", "escape", "for_slack", "truncate", "user_text"]


def user_text(text: str, limit: int) -> str:
    """User text as it goes into a mrkdwn field: mentions and links live, the rest escaped, cut to fit."""
    return for_slack(text, limit)
