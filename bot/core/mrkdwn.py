"""Making user text safe and the right size for Slack's mrkdwn (see `bot.core.text`, which does it)."""

import re

from bot.core.text import TRUNCATION_MARK, escape, for_slack, truncate

__all__ = ["TRUNCATION_MARK", "escape", "for_slack", "link", "truncate", "user_text"]


def user_text(text: str, limit: int) -> str:
    """User text as it goes into a mrkdwn field: mentions and links live, the rest escaped, cut to fit."""
    return for_slack(text, limit)


def link(url: str | None, label: str) -> str:
    """`<url|label>` for a plain http(s) URL; empty for anything else, so a URL from outside
    (an alert's) cannot carry mrkdwn of its own into a message."""
    if not url or re.fullmatch(r"https?://[^\s<>|`]+", url) is None:
        return ""
    return f"<{url.replace('&', '&amp;')}|{escape(label)}>"
