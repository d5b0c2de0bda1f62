"""The SQLite side of the store: numbered migrations, and the shape of a write transaction.

The connection handling itself (one writer, a reader per thread, WAL) is the Store's own, in
bot/store/base.py; version 1's tables are built by bot/store/schema.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlite_utils

from bot.store.migrations import Migration


class Tx(Protocol):
    """A write transaction as the store's methods use it: sqlite_utils.Database on SQLite,
    PostgresTx on PostgreSQL."""

    def execute(self, sql: str, params: Any = ...) -> Any: ...

    def query(self, sql: str, params: Any = ...) -> Iterator[dict[str, Any]]: ...


def migrate_sqlite(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> None:
    """Apply the numbered migrations this file has not had, each in its own transaction.

    A file made before there was a version table has version 1's schema (`migrate_sqlite_baseline`
    has just completed it), so it is recorded as applied like any other.
    """
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    for migration in migrations:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            if not list(db.query("SELECT 1 FROM schema_version WHERE version = ?", [migration.version])):
                for statement in migration.sqlite:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    [migration.version, migration.name, datetime.now(UTC).isoformat()],
                )
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        else:
            db.conn.execute("COMMIT")
