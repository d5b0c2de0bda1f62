"""Slack's rate limits are the bot's own to handle: the sandbox enforces them (on by default) and
the client sleeps out only a short 429 itself (once), so what happens to a rate-limited
delivery is the dispatcher's doing: kept, tried again exactly after `Retry-After`, sent once,
and dropped only when it became moot meanwhile.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.delivery.dispatch import Dispatcher, Route
from bot.delivery.errors import transient
from bot.domain.deliveries import RATELIMITED, Delivery, DeliveryKind, Firing
from bot.domain.incidents import declare
from bot.sandbox.runner import BOT_TOKEN
from bot.sandbox.slack import SlackSandbox
from bot.slack.gateway import SlackGateway, make_client
from bot.store import Store

RETRY_AFTER = 3  # longer than the client ever sleeps out itself (RATE_LIMIT_WAIT_MAX_S)


def page_of(bot, number: int = 1):
    pages = bot.bot.store.deliveries(number, kind=DeliveryKind.PAGE)
    return pages[0] if pages else None


def test_the_sandbox_enforces_a_tier_and_the_per_channel_post_limit():
    with SlackSandbox() as slack:
        bare = WebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
        answers = []
        for _ in range(12):
            try:
                bare.conversations_list(limit=1)  # Tier 2: a burst of a few, then ~1 per 3 s
                answers.append("ok")
            except SlackApiError as exc:
                answers.append(exc.response.status_code)
                retry_after = int(exc.response.headers["Retry-After"])
                assert exc.response["error"] == "ratelimited" and 1 <= retry_after <= 3
        assert answers[:5] == ["ok"] * 5 and 429 in answers
        posts = []
        for _ in range(9):
            try:
                bare.chat_postMessage(channel="C0INCIDENT", text="x")
                posts.append("ok")
            except SlackApiError as exc:
                posts.append(exc.response.status_code)
        assert posts[:6] == ["ok"] * 6 and posts[6:] == [429] * 3
        # Another channel has its own allowance; a refused post was not carried out.
        slack.add_channel("elsewhere", id="C0ELSEWHERE")
        bare.chat_postMessage(channel="C0ELSEWHERE", text="y")
        assert len([m for m in slack.messages_in("C0INCIDENT") if m.text == "x"]) == 6
        assert len(slack.rate_limited()) == 3 + answers.count(429)


def test_the_sandbox_answers_bursts_when_told_to():
    with SlackSandbox(rate_limits=False) as slack:
        bare = WebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
        for _ in range(10):
            bare.chat_postMessage(channel="C0INCIDENT", text="x")
        assert not slack.rate_limited()


def test_a_ratelimited_page_waits_out_retry_after_and_is_sent_once(bot):
    bot.slack.rate_limit("conversations.open", times=1, retry_after=RETRY_AFTER)  # the page's DM

    bot.command("declare p3 Export button broken", user="U0ALICE")

    waiting = bot.slack.wait_for(lambda: (p := page_of(bot)) and p.attempts == 1 and p)
    [refused] = [c for c in bot.slack.calls_to("conversations.open") if c.status == 429]
    # Kept, and planned exactly when Slack said (not cancelled, not the 5 s backoff).
    assert waiting.status == "pending" and waiting.last_error == RATELIMITED
    planned = waiting.next_attempt_at.timestamp() - refused.at
    assert RETRY_AFTER - 0.5 <= planned <= RETRY_AFTER + 0.5, planned
    bot.slack.wait_for_dm("U0SUPPORT", "You are paged", timeout=RETRY_AFTER + 5)
    opened = [c for c in bot.slack.calls_to("conversations.open") if c.ok]
    assert opened[0].at - refused.at >= RETRY_AFTER - 0.1
    sent = bot.slack.wait_for(lambda: (p := page_of(bot)) and p.status == "sent" and p)
    assert sent.attempts == 2
    assert len([m for m in bot.slack.dms_to("U0SUPPORT") if "You are paged" in m.text]) == 1


def test_a_page_that_an_ack_made_moot_while_it_waited_out_a_rate_limit_is_not_sent(bot):
    bot.slack.rate_limit("conversations.open", times=1, retry_after=RETRY_AFTER)
    bot.command("declare p3 Export button broken", user="U0ALICE")
    bot.slack.wait_for(lambda: (p := page_of(bot)) and p.last_error == RATELIMITED)

    bot.command("ack INC-1", user="U0ALICE")

    cancelled = bot.slack.wait_for(lambda: (p := page_of(bot)) and p.status == "cancelled" and p)
    assert "no longer needed" in (cancelled.last_error or "")
    assert not [m for m in bot.slack.dms_to("U0SUPPORT") if "You are paged" in m.text]


def test_a_ratelimited_check_of_a_post_in_doubt_never_posts_it_again(tmp_path):
    """A post whose answer was lost may be in Slack: when the history check meets a rate limit,
    the bot waits rather than post a second copy."""
    with SlackSandbox() as slack:
        store = Store(str(tmp_path / "bot.db"))
        gateway = SlackGateway(make_client(BOT_TOKEN, slack.api_url))
        now = datetime.now(UTC)
        incident = store.create_incident(
            declare(title="Checkout down", severity="P3", by="U0ALICE", now=now, channel="incident-response"),
            now,
            (),
            (),
        )
        store.record_firing(
            incident.number, Firing("warning:x", (Delivery(DeliveryKind.WARNING, "incident", "hello"),)), now
        )
        [delivery] = store.deliveries(incident.number)
        # The first attempt got as far as Slack, and its answer was lost.
        store.set_delivery_channel(delivery.id, "C0INCIDENT", None)
        store.retry_delivery(delivery.id, "timeout", now - timedelta(seconds=1))
        slack.rate_limit("conversations.history", times=1, retry_after=RETRY_AFTER)
        dispatcher = Dispatcher(store, gateway, lambda: datetime.now(UTC), routes={DeliveryKind.WARNING: _never_sent()})

        dispatcher.send(store.deliveries(incident.number)[0])

        [after] = store.deliveries(incident.number)
        assert after.status == "pending" and after.last_error == RATELIMITED
        assert after.next_attempt_at - datetime.now(UTC) > timedelta(seconds=RETRY_AFTER - 1)
        assert not slack.calls_to("chat.postMessage")
        store.close()


def _never_sent() -> Route:
    def send(delivery, incident):
        raise AssertionError("sent again while Slack could not say whether it landed")

    return Route(send)


def test_a_rate_limit_counts_as_transient():
    with SlackSandbox() as slack:
        bare = WebClient(token=BOT_TOKEN, base_url=slack.api_url, retry_handlers=[])
        slack.rate_limit("chat.postMessage", times=1, retry_after=RETRY_AFTER)
        started = time.monotonic()
        try:
            bare.chat_postMessage(channel="C0INCIDENT", text="x")
        except SlackApiError as exc:
            assert transient(exc)
        else:
            raise AssertionError("not rate limited")
        assert time.monotonic() - started < 1


def test_the_client_sleeps_out_only_a_short_rate_limit_itself():
    with SlackSandbox() as slack:
        gateway = SlackGateway(make_client(BOT_TOKEN, slack.api_url))
        slack.rate_limit("chat.postMessage", times=1, retry_after=1)
        gateway.post("C0INCIDENT", "short wait: retried")
        slack.rate_limit("chat.postMessage", times=1, retry_after=RETRY_AFTER)
        started = time.monotonic()
        try:
            gateway.post("C0INCIDENT", "long wait: raised")
        except SlackApiError as exc:
            assert exc.response["error"] == "ratelimited"
        else:
            raise AssertionError("a long Retry-After was slept out in-process")
        assert time.monotonic() - started < 1
        assert [m.text for m in slack.messages_in("C0INCIDENT")] == ["short wait: retried"]


def test_announcement_edits_that_pile_up_collapse_into_the_latest(bot):
    bot.command("declare p3 Export button broken", user="U0ALICE")
    announcement = bot.slack.wait_for_message("C0INCIDENT", "INC-1 ·")
    store = bot.bot.store
    bot.slack.wait_for(lambda: not [d for d in store.deliveries(1) if d.status in ("pending", "sending")])
    bot.slack.delay("chat.update", seconds=1.0)  # a slow Slack: the edits owed pile up

    for n in range(8):
        bot.command(f"update INC-1 Step {n}", user="U0ALICE")

    def settled():
        return not [d for d in store.deliveries(1, kind="refresh") if d.status in ("pending", "sending")]

    bot.slack.wait_for(settled, timeout=30)
    refreshes = store.deliveries(1, kind="refresh")
    superseded = [d for d in refreshes if d.status == "superseded" and "superseded by" in (d.last_error or "")]
    edits = [c for c in bot.slack.calls_to("chat.update") if c.params.get("ts") == announcement.ts and c.ok]
    assert superseded, [(d.id, d.status, d.last_error) for d in refreshes]
    assert len(edits) == len(refreshes) - len(superseded) < len(refreshes)
    # Nothing owed was lost: the last edit went after the last update was recorded.
    last_update = max(e.at for e in store.timeline(1) if e.kind == "update")
    assert edits[-1].at >= last_update.timestamp()
