"""Alerts from monitoring: recorded as they arrive, joined to incidents, proposed, dismissed, closed.

Each delivery of alerts is recorded in one transaction and each alert classified (new, attached
to its group's open incident, repeat, closed, stale); an alert can be open once (a unique
index), and belongs to at most one incident (`AlertTaken`). Also what the Slack side of an alert
still owes (`unsettled_alerts`) and the facts it learns (`note_alert`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import Any

from bot.domain.alerts import Alert, attached_line, closed_line
from bot.domain.policy import AlertRoute
from bot.domain.records import AlertReceipt, AlertRecord, EventKind
from bot.store.base import StoreBase, _from_db_datetime, _to_db
from bot.store.sqlite import Tx


class AlertsPart(StoreBase):
    """Alerts and their incidents."""

    def record_alerts(self, received: list[tuple[Alert, AlertRoute]], now: datetime) -> list[AlertReceipt]:
        """Record a delivery's alerts in one transaction and say what each one is to us.

        `new`: first seen, to be declared, proposed or ignored as routed; `attached`: first
        seen, and joined to the open incident of its group; `repeat`: still firing, already
        known; `closed`: it was open and has closed now; `stale`: nothing to do (a closing for
        an alert never seen open, or a late copy of one already closed).
        """
        receipts = []
        with self.transaction() as db:
            for alert, route in received:
                receipts.append(self._record_alert(db, alert, route, now))
        return receipts

    def _record_alert(self, db: Tx, alert: Alert, route: AlertRoute, now: datetime) -> AlertReceipt:
        open_rows = list(
            db.query(
                "SELECT * FROM alerts WHERE source = ? AND alert_id = ? AND closed_at IS NULL",
                [alert.source, alert.alert_id],
            )
        )
        if open_rows:
            row = open_rows[0]
            if alert.is_open:
                db.execute(
                    "UPDATE alerts SET last_seen_at = ?, notifications = notifications + 1, summary = ? WHERE id = ?",
                    [_to_db(now), alert.summary or row["summary"], row["id"]],
                )
                return AlertReceipt(self._alert_in(db, row["id"]), "repeat")
            ended = alert.ended_at or now
            db.execute(
                "UPDATE alerts SET closed_at = ?, ended_at = ?, last_seen_at = ? WHERE id = ?",
                [_to_db(now), _to_db(ended), _to_db(now), row["id"]],
            )
            record = self._alert_in(db, row["id"])
            if record.incident is not None:
                self._event(db, record.incident, ended, EventKind.ALERT_CLOSED, "bot", closed_line(record, ended))
            return AlertReceipt(record, "closed")
        if not alert.is_open:
            return AlertReceipt(None, "stale")
        seen = list(
            db.query(
                "SELECT id FROM alerts WHERE source = ? AND alert_id = ? AND started_at = ?",
                [alert.source, alert.alert_id, _to_db(alert.started_at)],
            )
        )
        if seen:  # a late copy of an alert that has since closed
            return AlertReceipt(self._alert_in(db, seen[0]["id"]), "stale")
        incident = self._group_incident(db, alert) if route.action != "ignore" else None
        cursor = db.execute(
            "INSERT INTO alerts (source, alert_id, group_key, policy, condition, summary, url, labels, severity,"
            " action, started_at, received_at, last_seen_at, notifications, incident)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?) RETURNING id",
            [
                alert.source,
                alert.alert_id,
                alert.group_key,
                alert.policy,
                alert.condition,
                alert.summary,
                alert.url,
                json.dumps(alert.labels, ensure_ascii=False),
                route.severity,
                route.action,
                _to_db(alert.started_at),
                _to_db(now),
                _to_db(now),
                incident,
            ],
        )
        record = self._alert_in(db, int(cursor.fetchone()[0]))
        if incident is not None:
            self._event(db, incident, alert.started_at, EventKind.ALERT, "bot", attached_line(record))
            return AlertReceipt(record, "attached")
        return AlertReceipt(record, "new")

    def _group_incident(self, db: Tx, alert: Alert) -> int | None:
        """The open incident an open alert of the same group is attached to, if any."""
        if not alert.group_key:
            return None
        rows = list(
            db.query(
                "SELECT a.incident FROM alerts a JOIN incidents i ON i.number = a.incident"
                " WHERE a.source = ? AND a.group_key = ? AND a.closed_at IS NULL AND i.status != 'resolved'"
                " ORDER BY a.id DESC LIMIT 1",
                [alert.source, alert.group_key],
            )
        )
        return int(rows[0]["incident"]) if rows else None

    def _link_alert(self, db: Tx, alert_id: int, number: int) -> None:
        cursor = db.execute("UPDATE alerts SET incident = ? WHERE id = ? AND incident IS NULL", [number, alert_id])
        if cursor.rowcount != 1:
            rows = list(db.query("SELECT incident FROM alerts WHERE id = ?", [alert_id]))
            raise AlertTaken(alert_id, rows[0]["incident"] if rows else None)
        record = self._alert_in(db, alert_id)
        self._event(db, number, record.started_at, EventKind.ALERT, "bot", attached_line(record))

    def open_group_alerts(self, record: AlertRecord) -> list[AlertRecord]:
        """The other open alerts of the alert's group that have no incident yet (and are not
        dismissed or ignored): declared together, they become one incident."""
        if not record.group_key:
            return []
        rows = self._rows(
            "SELECT * FROM alerts WHERE source = ? AND group_key = ? AND id != ? AND closed_at IS NULL"
            " AND incident IS NULL AND dismissed_by IS NULL AND action != 'ignore' ORDER BY id",
            [record.source, record.group_key, record.id],
        )
        return [_alert(r) for r in rows]

    def proposal_alerts(self, channel: str, ts: str) -> list[AlertRecord]:
        """The alerts one proposal shows (an alert group proposes once), oldest first."""
        rows = self._rows(
            "SELECT * FROM alerts WHERE proposal_channel = ? AND proposal_ts = ? ORDER BY id", [channel, ts]
        )
        return [_alert(r) for r in rows]

    def alert(self, alert_id: int) -> AlertRecord | None:
        rows = self._rows("SELECT * FROM alerts WHERE id = ?", [alert_id])
        return _alert(rows[0]) if rows else None

    def alerts_of(self, number: int) -> list[AlertRecord]:
        return [_alert(r) for r in self._rows("SELECT * FROM alerts WHERE incident = ? ORDER BY id", [number])]

    def unsettled_alerts(self) -> list[AlertRecord]:
        """Alerts whose Slack side is not done: to declare, to propose, to link, or to close."""
        rows = self._rows(
            "SELECT * FROM alerts WHERE"
            " (closed_at IS NULL AND incident IS NULL AND dismissed_by IS NULL"
            "   AND (action = 'declare' OR (action = 'propose' AND proposal_ts IS NULL)))"
            " OR (incident IS NOT NULL AND link_noted = 0)"
            " OR (closed_at IS NOT NULL AND close_noted = 0 AND (incident IS NOT NULL OR proposal_ts IS NOT NULL))"
            " ORDER BY id"
        )
        return [_alert(r) for r in rows]

    def note_alert(self, alert_id: int, **values: Any) -> AlertRecord:
        """Facts learnt while showing an alert in Slack (the proposal's ts, lines posted)."""
        allowed = {"proposal_channel", "proposal_ts", "link_noted", "close_noted"}
        assert set(values) <= allowed, set(values) - allowed
        with self.transaction() as db:
            assignments = ", ".join(f"{k} = ?" for k in values)
            db.execute(f"UPDATE alerts SET {assignments} WHERE id = ?", [*map(_to_db, values.values()), alert_id])
            return self._alert_in(db, alert_id)

    def dismiss_alert(self, alert_id: int, by: str) -> tuple[bool, AlertRecord | None]:
        """Dismiss a proposal; False (and the alert as it is) when it was declared or dismissed already."""
        with self.transaction() as db:
            cursor = db.execute(
                "UPDATE alerts SET dismissed_by = ? WHERE id = ? AND incident IS NULL AND dismissed_by IS NULL",
                [by, alert_id],
            )
            rows = list(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id]))
            return cursor.rowcount == 1, (_alert(rows[0]) if rows else None)

    def _alert_in(self, db: Tx, alert_id: int) -> AlertRecord:
        return _alert(next(db.query("SELECT * FROM alerts WHERE id = ?", [alert_id])))


class AlertTaken(Exception):
    """An incident was about to be declared for an alert that already has one."""

    def __init__(self, alert_id: int, incident: int | None) -> None:
        super().__init__(f"alert {alert_id} already belongs to INC-{incident}")
        self.alert_id = alert_id
        self.incident = incident


def _alert(row: dict[str, Any]) -> AlertRecord:
    values = {k: row[k] for k in (f.name for f in fields(AlertRecord))}
    for key in ("started_at", "ended_at", "received_at", "last_seen_at", "closed_at"):
        values[key] = _from_db_datetime(row[key])
    values["labels"] = json.loads(row["labels"] or "{}")
    values["summary"] = row["summary"] or ""
    values["condition"] = row["condition"] or ""
    values["group_key"] = row["group_key"] or ""
    values["notifications"] = int(row["notifications"] or 1)
    values["link_noted"] = bool(row["link_noted"])
    values["close_noted"] = bool(row["close_noted"])
    return AlertRecord(**values)
