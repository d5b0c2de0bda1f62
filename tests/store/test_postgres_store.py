"""What only the PostgreSQL store has: the URL that selects it, and connections the server drops."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psycopg

from bot.domain import incidents
from bot.store import Store, open_store
from bot.store.postgres import IDLE_IN_TRANSACTION_S

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_a_postgresql_url_selects_postgresql_and_a_path_sqlite(pg_url: str, tmp_path) -> None:
    pg, lite = open_store(pg_url), open_store(str(tmp_path / "x.db"))
    try:
        assert (pg.dialect, lite.dialect) == ("postgresql", "sqlite")
        assert pg.ping() and lite.ping()
    finally:
        pg.close()
        lite.close()


def drop_connections(url: str) -> None:
    """What a Cloud SQL failover or restart does to every open connection."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_writes_survive_the_server_dropping_the_pools_connections(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        first = store.create_incident(
            incidents.declare(title="Checkout down", severity="P1", by="U0DECL", now=T0, channel="C0ANN"), T0
        )
        drop_connections(pg_url)
        second = store.create_incident(
            incidents.declare(title="Search slow", severity="P3", by="U0DECL", now=T0, channel="C0ANN"), T0
        )
        assert second.number == first.number + 1
        assert [i.number for i in store.open_incidents()] == [first.number, second.number]
    finally:
        store.close()


def test_reads_survive_the_server_dropping_the_pools_connections(pg_url: str) -> None:
    store = Store(pg_url)
    try:
        made = store.create_incident(
            incidents.declare(title="Checkout down", severity="P1", by="U0DECL", now=T0, channel="C0ANN"), T0
        )
        assert store.get(made.number) == made
        drop_connections(pg_url)
        assert store.get(made.number) == made
        assert store.ping()
        again = store.create_incident(
            incidents.declare(title="Search slow", severity="P3", by="U0DECL", now=T0, channel="C0ANN"), T0
        )
        assert again.number == made.number + 1
    finally:
        store.close()


FROZEN_MID_TRANSACTION = """
import os, signal, sys
from bot.store import Store
store = Store(sys.argv[1])
with store.transaction() as db:  # holds the writers' lock, as every write transaction does
    db.execute("SELECT 1")
    print("in transaction", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_an_instance_frozen_inside_a_write_transaction_does_not_hold_the_lease_takeover(pg_url: str) -> None:
    """SIGSTOP (or a paused VM) mid-transaction leaves the server waiting with the writers' lock
    held; the server ends that session after IDLE_IN_TRANSACTION_S, so the other instance can
    write, and take the lease, long before the frozen one wakes (without the timeout: never)."""
    frozen = subprocess.Popen([sys.executable, "-c", FROZEN_MID_TRANSACTION, pg_url], stdout=subprocess.PIPE, text=True)
    store = Store(pg_url)
    try:
        assert frozen.stdout is not None and frozen.stdout.readline().strip() == "in transaction"
        took: list[object] = []
        started = time.monotonic()
        taker = threading.Thread(target=lambda: took.append(store.acquire_lease("instance-b", 2.0)), daemon=True)
        taker.start()
        taker.join(timeout=IDLE_IN_TRANSACTION_S + 10)
        assert took and took[0] is not None, "the frozen instance's transaction held the lease takeover"
        assert time.monotonic() - started < IDLE_IN_TRANSACTION_S + 10
    finally:
        frozen.kill()
        frozen.wait(timeout=10)
        store.close()
