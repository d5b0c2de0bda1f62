"""A page digest caught by SIGKILL between its post and the rows' write: at restart each page's
own look-up (the post's metadata carries every row's key) finds it; nothing is sent twice and
nothing is lost."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.request
from pathlib import Path

from bot.sandbox.runner import SIGNING_SECRET
from bot.sandbox.slack import SlackSandbox
from bot.sandbox.slack.platform import SlackPlatform
from tests.restarts.test_restart import BotProcess

PAGED = re.compile(r"You are paged: (INC-\d+(?:, INC-\d+)*)")


def paged_refs(slack: SlackSandbox, user: str) -> list[list[str]]:
    """The incidents each page message to `user` holds."""
    return [
        re.findall(r"INC-\d+", found.group(1))
        for m in slack.dms_to(user)
        if not m.is_reply and (found := PAGED.search(m.text))
    ]


def backlog(bot: BotProcess) -> int | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{bot.port}/healthz", timeout=2) as answer:
        return json.loads(answer.read()).get("delivery_backlog")


def test_a_digest_killed_before_its_rows_were_written_is_found_at_restart_not_sent_again(tmp_path: Path):
    with SlackSandbox() as slack:
        bot = BotProcess(tmp_path, slack)
        try:
            # Slack carries every post out at once but answers 3 s late: the first page's sender is
            # still waiting when the next two are owed, so they go together once it has its answer.
            slack.hold_response("chat.postMessage", 3.0)
            bot.start()
            platform = SlackPlatform(bot.url, SIGNING_SECRET, slack)
            for name in ("Search down", "Login down", "Billing down"):
                assert platform.command(f"declare p3 {name}", user="U0ALICE").status == 200
            slack.wait_for(
                lambda: any(len(refs) > 1 for refs in paged_refs(slack, "U0SUPPORT")), timeout=15, what="the digest"
            )
            bot.kill()  # the digest is in Slack; its answer, and so the rows' write, is not
            before = sorted(paged_refs(slack, "U0SUPPORT"))
            assert sorted(ref for refs in before for ref in refs) == ["INC-1", "INC-2", "INC-3"]
            [digest_refs] = [refs for refs in before if len(refs) > 1]
            slack.clear_faults()

            bot.start()
            slack.wait_for(lambda: backlog(bot) == 0, timeout=20, what="every delivery sent")
            assert sorted(paged_refs(slack, "U0SUPPORT")) == before, "a page was sent twice"
            [digest] = [m for m in slack.dms_to("U0SUPPORT") if ", ".join(digest_refs) in m.text]
            in_digest = sorted(int(ref.split("-")[1]) for ref in digest_refs)
            with sqlite3.connect(tmp_path / "incident-bot.db") as db:
                rows = db.execute("SELECT incident, status, ts FROM deliveries WHERE kind = 'page' ORDER BY incident")
                pages = rows.fetchall()
            assert [(n, status) for n, status, _ in pages] == [(1, "sent"), (2, "sent"), (3, "sent")]
            assert [ts for n, _, ts in pages if n in in_digest] == [digest.ts] * 2, "each page of the digest has its ts"
        finally:
            if bot.process and bot.process.poll() is None:
                bot.kill()
