"""Schema migrations: an older SQLite file upgraded in place, and PostgreSQL instances that start
at the same moment applying each migration exactly once."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from bot.domain import incidents
from bot.domain.alerts import CLOUD_MONITORING, Alert
from bot.domain.policy import AlertRoute
from bot.store import Store
from bot.store.migrations import migrations

OLD_DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "store_217a405.sql"
T1 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def test_a_database_of_the_previous_schema_is_upgraded_in_place_with_its_incidents(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_DUMP.read_text())
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "schema_version" not in tables and "alerts" not in tables  # really the old shape

    store = Store(path)
    try:
        assert store.schema_version == max(m.version for m in migrations())
        first, second = store.get(1), store.get(2)
        assert first is not None and first.title == "Checkout returns 500" and first.acknowledged_by == "U0PRIMARY"
        assert second is not None and second.severity == "P3" and second.is_open
        assert [e.kind for e in store.timeline(1)] == ["declare", "ack"]
        # What the newer features need is there: a new incident numbers on, alerts are recorded.
        third = store.create_incident(
            incidents.declare(title="New", severity="P2", by="U0DECL", now=T1, channel="C0ANN"), T1
        )
        assert third.number == 3 and third.detected_at is None
        alert = Alert(CLOUD_MONITORING, "0.a", "Error rate", "open", T1, None, "12% errors", group_key="g")
        assert store.record_alerts([(alert, AlertRoute("P2", "propose"))], T1)[0].outcome == "new"
        assert store.acquire_lease("test", 10.0) is not None
    finally:
        store.close()

    again = Store(path)  # a second start finds nothing left to do and changes nothing
    try:
        assert again.schema_version == max(m.version for m in migrations())
        assert [i.number for i in again.open_incidents()] == [1, 2, 3]
    finally:
        again.close()


def test_instances_starting_at_once_on_postgresql_migrate_once(pg_url: str) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait(timeout=10)
            opened.append(Store(pg_url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert not errors, errors
        assert len(opened) == 4
        rows = opened[0]._rows("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == [m.version for m in migrations()]
        made = opened[1].create_incident(
            incidents.declare(title="x", severity="P1", by="U0DECL", now=T1, channel="C0ANN"), T1
        )
        assert opened[2].get(made.number) == made
    finally:
        for store in opened:
            store.close()
