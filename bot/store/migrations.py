"""Numbered forward migrations, the same in meaning for both stores.

Each store records the versions applied in a `schema_version` table and applies the missing ones
in order at start-up. Version 1 is the first release's schema: SQLite files made before there was
a version table hold it already (bot/store/schema.py's idempotent `migrate_sqlite_baseline`
creates and completes it at every start), and PostgreSQL gets it as DDL (`schema.BASELINE`).
Later versions are SQL both dialects accept.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.schema import BASELINE


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    postgres: tuple[str, ...]
    sqlite: tuple[str, ...]


# The timers' lease: who leads, until when (seconds since the epoch, by the database's clock), and
# the fencing token that every takeover increases.
LEASES = (
    "CREATE TABLE IF NOT EXISTS leases ("
    " name TEXT PRIMARY KEY, holder TEXT NOT NULL, token BIGINT NOT NULL,"
    " acquired_at DOUBLE PRECISION NOT NULL, renewed_at DOUBLE PRECISION NOT NULL,"
    " expires_at DOUBLE PRECISION NOT NULL)",
)


# Indexes for years of history. open_incidents() filters on `status != 'resolved'`, which no
# plain index serves: with 100,000 resolved incidents every list, reconcile and set-up check
# scanned them all; a partial index whose WHERE is that very term holds only the open ones.
# resolved_since() (post-mortem reminders) reads a few days of resolutions.
HISTORY_INDEXES = (
    "CREATE INDEX IF NOT EXISTS incidents_open_by_number ON incidents (number) WHERE status != 'resolved'",
    "CREATE INDEX IF NOT EXISTS incidents_status_resolved_at ON incidents (status, resolved_at)",
)


# A delivery being sent is claimed by one instance until a deadline longer than any send can take
# (bot/delivery/dispatch.py): nobody else takes it, and nobody asks Slack whether it landed, before.
DELIVERY_CLAIMS = (
    "ALTER TABLE deliveries ADD COLUMN claimed_by TEXT",
    "ALTER TABLE deliveries ADD COLUMN claim_until TEXT",
)


def migrations() -> tuple[Migration, ...]:
    return (
        Migration(1, "the first release's schema", postgres=BASELINE, sqlite=()),
        Migration(2, "the timers' lease", postgres=LEASES, sqlite=LEASES),
        Migration(3, "indexes for years of history", postgres=HISTORY_INDEXES, sqlite=HISTORY_INDEXES),
        Migration(4, "deliveries claimed until a deadline", postgres=DELIVERY_CLAIMS, sqlite=DELIVERY_CLAIMS),
    )
