"""The PostgreSQL side of the store: a connection pool, write transactions, migrations, NOTIFY.

Every write transaction first takes one transaction-scoped advisory lock, so writes from every
instance are serialised exactly as SQLite's `BEGIN IMMEDIATE` serialises them in one process:
each decide-and-apply (`Store.change`, `Store.claim`, a proposal's confirm) reads what the
previous writer committed and nothing can slip in between. Reads take no lock (MVCC). The
bot's write rate is a few transactions a second at worst, far below what one lock allows.

The store's SQL is written once, with `?` placeholders; here they become psycopg's `%s`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from bot.store.migrations import Migration

log = logging.getLogger(__name__)

# psycopg and psycopg_pool are imported in the functions that use them, not here: they are the
# optional [postgres] extra, and a SQLite store, which never calls these, runs without them.

# Advisory lock keys: any constants, the same in every instance.
WRITE_LOCK = 7_415_001
MIGRATION_LOCK = 7_415_002
WORK_CHANNEL = "incident_bot_work"
# A session that sits inside a transaction without sending anything for this long is ended by
# the server, which rolls it back and frees its locks. Every write transaction holds WRITE_LOCK,
# so an instance frozen mid-transaction (SIGSTOP, a VM paused, a stop-the-world stall) would
# otherwise hold every other instance's writes, the lease's takeover included, until it woke.
# The store's transactions send their statements back to back (no Slack or Google call inside
# one), so a live one is never idle nearly this long.
IDLE_IN_TRANSACTION_S = 5


def is_postgres_url(path: str) -> bool:
    return path.startswith(("postgresql://", "postgres://"))


@lru_cache(maxsize=1024)
def _sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTx:
    """One write transaction, with the two calls the store makes (like sqlite_utils.Database's)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.conn.execute(_sql(sql), list(params or ()))

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Iterator[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self.conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(_sql(sql), list(params or ()))
            return iter(cursor.fetchall())


def _configure(conn: Any) -> None:
    """Each new pool connection: ended by the server if left idle inside a transaction."""
    conn.execute(f"SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION_S}s'")


class PostgresBackend:
    def __init__(self, url: str, max_connections: int = 10, timeout_s: float = 30.0) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as exc:  # pragma: no cover - the message is the point
            raise RuntimeError(
                "a postgresql:// store needs the [postgres] extra: pip install 'incident-bot[postgres]'"
            ) from exc
        self.url = url
        # autocommit: a read is its own statement; writes open their transaction explicitly.
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True},
            configure=_configure,
            timeout=timeout_s,
            name="incident-bot",
            open=True,
        )
        self.pool.wait(timeout=timeout_s)

    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        """A write transaction holding the writers' lock. A connection the server dropped fails
        before anything is written (at BEGIN or the lock): the pool discards it, and the
        transaction starts again on another."""
        import psycopg

        for attempt in (1, 2):
            conn = self.pool.getconn()
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK])
                break
            except psycopg.OperationalError:
                self.pool.putconn(conn)  # broken: the pool closes it and opens another
                if attempt == 2:
                    raise
        try:
            yield PostgresTx(conn)
        except BaseException:
            with suppress(psycopg.Error):  # a broken connection has nothing to roll back
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self.pool.putconn(conn)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        # Connections are not checked before use (that is a round trip per read, 4x a read's
        # cost): one the server dropped (a failover, a restart) fails, the pool discards it, and
        # the read is made once more on another.
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
                    cursor.execute(_sql(sql), list(params or ()))
                    return cursor.fetchall()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def migrate(self, migrations: Sequence[Migration]) -> None:
        """Apply the migrations not yet applied, each in its own transaction, under a session lock
        so that instances starting at the same moment apply each exactly once."""
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version"
                    " (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                done = {int(row[0]) for row in conn.execute("SELECT version FROM schema_version")}
                for migration in migrations:
                    if migration.version in done:
                        continue
                    with conn.transaction():
                        for statement in migration.postgres:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO schema_version (version, name, applied_at) VALUES (%s, %s, %s)",
                            [migration.version, migration.name, datetime.now(UTC).isoformat()],
                        )
                    log.info("schema migration %s applied: %s", migration.version, migration.name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])

    def notify(self, payload: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", [WORK_CHANNEL, payload])

    def listen(self, on_notice: Callable[[str], None], stopping: threading.Event) -> None:
        """Call `on_notice` with each payload NOTIFYed on the work channel until `stopping` is set.

        A connection of its own, outside the pool (LISTEN belongs to a session); a lost connection
        is reopened, and the leader's periodic reconcile covers any notice sent meanwhile.
        """
        import psycopg

        while not stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {WORK_CHANNEL}")
                    while not stopping.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            on_notice(notice.payload)
            except Exception:  # noqa: BLE001 - reconnect; the reconcile job is the backstop
                log.warning("the work listener lost its connection; reconnecting", exc_info=True)
                stopping.wait(1.0)

    def close(self) -> None:
        self.pool.close()
