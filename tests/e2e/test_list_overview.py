"""`/incident list` with more open incidents than one message shows: the most severe first,
every open one counted, the rest summarised per severity, and resolved ones never read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import commands.list as list_command
from bot.domain import incidents
from bot.store import Store

T0 = datetime(2026, 1, 25, 14, 32, tzinfo=UTC)


def test_open_overview_orders_by_severity_then_age_and_counts_every_open_one(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "overview.db"))
    try:
        for title, severity in [("a", "SEV3"), ("b", "SEV1"), ("c", "SEV3"), ("d", "SEV2"), ("e", "SEV1")]:
            store.create_incident(incidents.declare(title=title, severity=severity, by="U0", now=T0, channel="C0"), T0)
        resolved = store.get(2)
        assert resolved is not None
        store.change(resolved, lambda i: incidents.resolve(i, by="U0", summary="done", now=T0), T0)

        shown, counts = store.open_overview(["SEV1", "SEV2", "SEV3"], 2)

        assert [(i.number, i.severity) for i in shown] == [(5, "SEV1"), (4, "SEV2")]
        assert counts == {"SEV1": 1, "SEV2": 1, "SEV3": 2}
        everything, counted = store.open_overview([], 10)  # all fit: counted from the rows themselves
        assert [i.number for i in everything] == [1, 3, 4, 5]
        assert counted == counts
    finally:
        store.close()


def test_list_shows_the_most_severe_and_summarises_the_rest(bot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(list_command, "SHOWN", 2)
    for text in ("declare p3 Slow admin page", "declare p1 Checkout down", "declare p4 Typo", "declare p2 Search slow"):
        assert "declared" in bot.command(text).text

    reply = bot.command("list")

    text = json.dumps(reply.blocks)
    assert reply.text == "4 open incident(s)"
    assert "4 open incidents" in text
    assert "*INC-2* P1" in text and "*INC-4* P2" in text
    assert "INC-1*" not in text and "INC-3*" not in text
    assert "and 2 more (1 P3, 1 P4), not shown" in text


def test_open_incidents_and_recent_resolutions_are_read_through_indexes(tmp_path: Path) -> None:
    """With years of resolved incidents, neither may scan the whole table (README: Performance)."""
    store = Store(str(tmp_path / "plans.db"))
    try:
        plans = {
            sql: " ".join(str(row[-1]) for row in store.db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
            for sql in (
                "SELECT * FROM incidents WHERE status != 'resolved' ORDER BY number",
                "SELECT number FROM incidents WHERE status = 'resolved' AND resolved_at >= '2026-01-01'"
                " AND severity IN ('P1', 'P2')",
            )
        }
        assert [plan.split(" USING ")[-1].split(" ")[1] for plan in plans.values()] == [
            "incidents_open_by_number",
            "incidents_status_resolved_at",
        ], plans
    finally:
        store.close()
