"""Verify watches (the runbook's VERIFY step): the row is the truth the sampling timer is rebuilt
from. A sample is recorded only as the next one (compare-and-set on how many there are), and a
verdict only once (watching -> held | regressed | stopped, with its timeline line and the message
it owes in the same transaction), so a restart resumes a watch and nothing in it happens twice.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from bot.domain.deliveries import Firing
from bot.domain.records import EventKind
from bot.domain.verify import Sample, Watch, WatchStatus, samples_from_text, samples_to_text
from bot.store.base import _from_db_datetime, _to_db
from bot.store.deliveries import DeliveriesPart


class WatchesPart(DeliveriesPart):
    """Verify watches (a verdict records the message it owes as a firing, as deliveries do)."""

    def create_watch(self, draft: Watch, text: str) -> Watch:
        """Store a new watch with its timeline line."""
        row = {k: _to_db(v) for k, v in vars(draft).items() if k not in ("id", "samples")}
        row["samples"] = samples_to_text(draft.samples)
        with self.transaction() as db:
            cursor = db.execute(
                f"INSERT INTO watches ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)}) RETURNING id",
                list(row.values()),
            )
            watch = replace(draft, id=int(cursor.fetchone()[0]))
            self._event(db, draft.incident, draft.started_at, EventKind.VERIFY_STARTED, draft.started_by, text)
        return watch

    def get_watch(self, watch_id: int) -> Watch | None:
        rows = self._rows("SELECT * FROM watches WHERE id = ?", [watch_id])
        return _watch(rows[0]) if rows else None

    def watches(self, status: str | None = None, incident: int | None = None) -> list[Watch]:
        sql, params = "SELECT * FROM watches WHERE 1 = 1", list[Any]()
        if status is not None:
            sql, params = sql + " AND status = ?", [*params, status]
        if incident is not None:
            sql, params = sql + " AND incident = ?", [*params, incident]
        return [_watch(r) for r in self._rows(sql + " ORDER BY id", params)]

    def set_watch_message(self, watch_id: int, channel: str, ts: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE watches SET channel = ?, ts = ? WHERE id = ?", [channel, ts, watch_id])

    def add_watch_sample(self, watch_id: int, index: int, sample: Sample) -> Watch | None:
        """Record `sample` as sample number `index` of a watch still watching; None (nothing
        recorded) when that sample is already recorded or the watch is over."""
        with self.transaction() as db:
            rows = list(db.query("SELECT * FROM watches WHERE id = ?", [watch_id]))
            if not rows:
                return None
            watch = _watch(rows[0])
            if watch.status != WatchStatus.WATCHING or len(watch.samples) != index:
                return None
            samples = (*watch.samples, sample)
            db.execute(
                "UPDATE watches SET samples = ? WHERE id = ? AND status = 'watching'",
                [samples_to_text(samples), watch_id],
            )
        return replace(watch, samples=samples)

    def finish_watch(
        self,
        watch_id: int,
        status: WatchStatus,
        now: datetime,
        *,
        kind: EventKind | None,
        text: str,
        firing: Firing | None = None,
    ) -> Watch | None:
        """watching -> `status`, with its timeline line and the message it owes, once: None when
        the watch was already over (another run, or before a restart, decided it)."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE watches SET status = ?, finished_at = ? WHERE id = ? AND status = 'watching'",
                [str(status), _to_db(now), watch_id],
            )
            if cursor.rowcount != 1:
                return None
            watch = _watch(next(db.query("SELECT * FROM watches WHERE id = ?", [watch_id])))
            if kind is not None:
                self._event(db, watch.incident, now, kind, "bot", text)
            if firing is not None:
                self._record_firing(db, watch.incident, firing, now)
        return watch


def _watch(row: dict[str, Any]) -> Watch:
    values = {k: row[k] for k in (f.name for f in fields(Watch))}
    values["started_at"] = _from_db_datetime(values["started_at"])
    values["finished_at"] = _from_db_datetime(values["finished_at"])
    values["samples"] = samples_from_text(values["samples"])
    values["why"] = values["why"] or ""
    values["window_s"] = float(values["window_s"])
    values["every_s"] = float(values["every_s"])
    return Watch(**values)
