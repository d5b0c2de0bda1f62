"""Making user text safe and the right size for Slack's mrkdwn."""

import re

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
TRUNCATION_MARK = "… (truncated)"


def escape(text: str) -> str:
    """Escape `&`, `<`, `>` so user text cannot smuggle `<!channel>`, `<@U…>` or links."""
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, visibly, without splitting an escape like `&amp;`."""
    if len(text) <= limit:
        return text
    if limit < len(TRUNCATION_MARK):
        return text[:limit]
    cut = text[: max(0, limit - len(TRUNCATION_MARK))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + TRUNCATION_MARK


def user_text(text: str, limit: int) -> str:
    """User text as it goes into a mrkdwn field: escaped, then cut to fit."""
    return truncate(escape(text), limit)


def link(url: str | None, label: str) -> str:
    """`<url|label>` for a plain http(s) URL; empty for anything else, so a URL from outside
    (an alert's) cannot carry mrkdwn of its own into a message."""
    if not url or re.fullmatch(r"https?://[^\s<>|`]+", url) is None:
        return ""
    return f"<{url.replace('&', '&amp;')}|{escape(label)}>"
