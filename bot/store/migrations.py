"""Numbered forward migrations, the same in meaning for both stores.

Each store records the versions applied in a `schema_version` table and applies the missing ones
in order at start-up. Version 1 is the first release's schema: SQLite files made before there was
a version table hold it already (the SQLite store's idempotent `_migrate` creates and completes
it at every start), and PostgreSQL gets it as DDL. Later versions are SQL both dialects accept.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def migrations() -> tuple[Migration, ...]:
    from bot.store.postgres import BASELINE

    return (
        Migration(1, "the first release's schema", postgres=BASELINE, sqlite=()),
        Migration(2, "the timers' lease", postgres=LEASES, sqlite=LEASES),
    )
