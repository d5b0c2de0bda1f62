"""`incident-bot postmortem INC-7` and `incident-bot stats [30d]`: the review, read from the store.

Both read the database named by `INCIDENT_BOT_DB` (and the config of `INCIDENT_BOT_CONFIG`),
so they work beside a running bot and need no Slack token. The post-mortem printed is the
stored draft, byte for byte what was uploaded to the war room; an incident never drafted is
drafted from the record without being stored.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import config as config_module
from bot.core.errors import UsageError
from bot.domain import postmortem
from bot.domain import stats as incident_stats
from bot.domain.incidents import parse_ref
from bot.review import drafts as reviews
from bot.store import Store
from bot.store.postgres import is_postgres_url


def _open_store() -> Store | None:
    path = os.environ.get("INCIDENT_BOT_DB", "incident-bot.db")
    if not is_postgres_url(path) and not Path(path).exists():
        print(f"incident-bot: no database at {path} (set INCIDENT_BOT_DB)", file=sys.stderr)
        return None
    return Store(path)


def _config() -> config_module.Config | None:
    try:
        return config_module.load(os.environ.get("INCIDENT_BOT_CONFIG") or None)
    except config_module.ConfigError as exc:
        print(f"incident-bot: invalid config {exc.source}: {'; '.join(exc.errors)}", file=sys.stderr)
        return None


def print_postmortem(ref: str) -> int:
    number = parse_ref(ref)
    if number is None:
        print(f"incident-bot: {ref!r} is not an incident; use INC-7, inc-7 or #7", file=sys.stderr)
        return 2
    store = _open_store()
    if store is None:
        return 1
    try:
        incident = store.get(number)
        if incident is None:
            print(f"incident-bot: INC-{number} does not exist", file=sys.stderr)
            return 1
        draft = store.draft(number)
        if draft is not None:
            markdown = draft.markdown
        else:
            config = _config()
            if config is None:
                return 1
            markdown = postmortem.render(reviews.facts(config, store, incident, datetime.now(UTC)))
            print(f"(INC-{number} has no stored draft yet; this one is written from the record now)", file=sys.stderr)
    finally:
        store.close()
    sys.stdout.buffer.write(markdown.encode("utf-8"))
    sys.stdout.flush()
    return 0


def print_stats(window_text: str) -> int:
    try:
        window = incident_stats.parse_window(window_text, "incident-bot stats [7d|30d|90d]")
    except UsageError as exc:
        print(f"incident-bot: {exc.reply_text()}", file=sys.stderr)
        return 2
    config = _config()
    store = _open_store()
    if config is None or store is None:
        return 1
    try:
        now = datetime.now(UTC)
        rows = store.stat_rows(now - window)
    finally:
        store.close()
    ack_within = {name: policy.ack_within for name, policy in config.severities.items()}
    print(incident_stats.report(incident_stats.compute(rows, ack_within, now), window))
    return 0
