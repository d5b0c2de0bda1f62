"""Pages to one person that pile up go as one message (a page digest), each incident its own
section with its own Acknowledge button; an ack closes that incident's section only.

Slack's limits are on (the sandbox's default). Slack answering every post 1.5 s late is what
makes pages pile up behind the one being sent, as a storm does behind the DM's token."""

from __future__ import annotations

import re

PAGED = re.compile(r"You are paged: (INC-\d+(?:, INC-\d+)*)")


def page_messages(slack, user: str) -> list:
    return [m for m in slack.dms_to(user) if not m.is_reply and PAGED.search(m.text)]


def paged_refs(message) -> list[str]:
    return re.findall(r"INC-\d+", PAGED.search(message.text).group(1))


def ack_button(message, number: int) -> dict | None:
    return next((b for b in message.buttons() if b["action_id"] == "incident_ack" and b["value"] == str(number)), None)


def test_pages_that_pile_up_go_as_one_message_and_each_button_acks_only_its_incident(bot):
    slack = bot.slack
    slack.delay("chat.postMessage", seconds=1.5)
    for i in range(1, 5):
        assert bot.command(f"declare p1 Storm {i}", user="U0ALICE").status == 200

    refs = slack.wait_for(
        lambda: (r := [ref for m in page_messages(slack, "U0PRIMARY") for ref in paged_refs(m)]) and len(r) >= 4 and r,
        timeout=20,
        what="a page for each of the 4 incidents",
    )
    slack.clear_faults()
    assert sorted(refs) == ["INC-1", "INC-2", "INC-3", "INC-4"], "each incident is paged exactly once"
    messages = page_messages(slack, "U0PRIMARY")
    assert len(messages) < 4, "the pages waiting behind the first went as one message"
    assert len(paged_refs(messages[0])) == 1, "the first page goes alone"
    digest = next(m for m in messages if len(paged_refs(m)) > 1)
    numbers = [int(ref.split("-")[1]) for ref in paged_refs(digest)]
    assert all(ack_button(digest, n) for n in numbers), "every incident in the digest has its own button"
    # Each page is its own delivery row, all sent as the digest's message.
    for n in numbers:
        row = slack.wait_for(
            lambda n=n: [r for r in bot.bot.store.deliveries(n, kind="page") if r.status == "sent"],
            timeout=10,
            what=f"INC-{n}'s page recorded as sent",
        )[0]
        assert (row.channel, row.ts) == (digest.channel, digest.ts)
        assert len(bot.bot.store.deliveries(n, kind="page")) == 1

    acked, other = numbers[-1], numbers[0]
    result = bot.click(ack_button(digest, acked), user="U0PRIMARY")
    assert result.status == 200
    digest = slack.wait_for(
        lambda: (
            (m := next(m for m in page_messages(slack, "U0PRIMARY") if m.ts == digest.ts))
            and not ack_button(m, acked)
            and m
        ),
        timeout=10,
        what=f"INC-{acked}'s section closed in the digest",
    )
    assert f"INC-{acked}* (P1" in digest.all_text and "No action needed" in digest.all_text
    assert bot.bot.store.get(acked).acknowledged_by == "U0PRIMARY"
    for n in numbers[:-1]:
        assert bot.bot.store.get(n).acknowledged_at is None, f"INC-{n} was acknowledged with INC-{acked}"
        assert ack_button(digest, n), f"INC-{n}'s button went with INC-{acked}'s ack"

    bot.click(ack_button(digest, other), user="U0PRIMARY")
    slack.wait_for(lambda: bot.bot.store.get(other).acknowledged_at)
    digest = slack.wait_for(
        lambda: (
            (m := next(m for m in page_messages(slack, "U0PRIMARY") if m.ts == digest.ts))
            and not ack_button(m, other)
            and m
        ),
        timeout=10,
        what=f"INC-{other}'s section closed too",
    )
    assert not ack_button(digest, acked), f"INC-{other}'s ack reopened INC-{acked}"
    for n in numbers[1:-1]:
        assert ack_button(digest, n) and bot.bot.store.get(n).acknowledged_at is None
    assert len(page_messages(slack, "U0PRIMARY")) == len(messages), "an ack posted no page again"
