"""A status update said everywhere it belongs: war room, announcement thread, the announcement
itself, the timeline, and (when asked) the status page. The one way in, for the command and the form.
"""

from __future__ import annotations

from bot.context import Context, Reply
from bot.core.errors import UsageError
from bot.core.text import for_slack, length
from bot.domain.deliveries import said
from bot.domain.incidents import Incident, post_update
from bot.incident.publishing import to_status_page

UPDATE_MAX = 2900
MESSAGE_MAX = 20_000  # mrkdwn of an update at its limit: escapes and mentions are longer than typed


def publish(
    ctx: Context, incident: Incident, user: str, text: str, status: str | None, *, public: bool = False, usage: str
) -> Reply:
    """Post the update (`usage` is what a refusal shows: the command's own)."""
    if length(text) > UPDATE_MAX:
        raise UsageError(f"Updates are limited to {UPDATE_MAX:,} characters; yours has {length(text):,}.", usage)
    now = ctx.now()

    def message(new: Incident) -> str:
        return f"*{new.ref} update* ({new.status}) from <@{user}>:\n{for_slack(text, MESSAGE_MAX)}"

    owed = ctx.store.firing_writer(lambda new: [said(new, message(new))], now)
    _, saved = ctx.store.change(
        incident, lambda current: post_update(current, text=text, status=status, by=user, now=now), now, also=owed
    )
    ctx.timers.replan(saved.number)
    if public:
        to_status_page(ctx, saved, "update", status=saved.status, body=text)
    ctx.timers.wake_deliveries()
    where = " and the status page" if public else ""
    return Reply(f"Update posted to {saved.ref}{where}.")
