"""Alerts from monitoring: recorded as they arrive, joined to incidents, proposed, dismissed, closed.

Each delivery of alerts is recorded in one transaction and each alert classified (new, attached
to its group's open incident, repeat, closed, stale); an alert can be open once (a unique
index), and belongs to at most one incident (`AlertTaken`). Also what the Slack side of an alert
still owes (`unsettled_alerts`) and the facts it learns (`note_alert`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot.domain.alerts import Alert, attached_line, closed_line
from bot.domain.deliveries import Delivery, DeliveryKind, Firing
from bot.domain.incidents import Incident
from bot.domain.policy import AlertRoute
from bot.domain.records import AlertReceipt, AlertRecord, EventKind
from bot.domain.refires import Fate, LastIncident, fate, group_token, message_key, resolution_of
from bot.store.base import StoreBase, _from_db_datetime, _to_db
from bot.store.sqlite import Tx


class AlertsPart(StoreBase):
    """Alerts and their incidents."""

    if TYPE_CHECKING:  # DeliveriesPart's, beside this part in the Store

        def _record_firing(self, db: Tx, number: int, firing: Firing, now: datetime) -> bool: ...

    def record_alerts(
        self, received: list[tuple[Alert, AlertRoute]], now: datetime, reopen_within: timedelta = timedelta(0)
    ) -> list[AlertReceipt]:
        """Record a delivery's alerts in one transaction and say what each one is to us.

        `new`: first seen, to be declared, proposed or ignored as routed; `attached`: first
        seen, and joined to the open incident of its group; `refire`: its group's incident was
        resolved less than `reopen_within` ago: the message in that incident is owed (a delivery
        recorded here), nothing is declared; `repeat`: still firing, already known; `closed`: it
        was open and has closed now; `stale`: nothing to do (a closing for an alert never seen
        open, or a late copy of one already closed).
        """
        receipts = []
        with self.transaction() as db:
            for alert, route in received:
                receipts.append(self._record_alert(db, alert, route, now, reopen_within))
        return receipts

    def _record_alert(
        self, db: Tx, alert: Alert, route: AlertRoute, now: datetime, reopen_within: timedelta
    ) -> AlertReceipt:
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
                record = self._alert_in(db, row["id"])
                if record.refire_of is not None and record.incident is None and not record.dismissed_by:
                    return self._refire_repeat(db, record, now, reopen_within)
                return AlertReceipt(record, "repeat")
            ended = alert.ended_at or now
            db.execute(
                "UPDATE alerts SET closed_at = ?, ended_at = ?, last_seen_at = ? WHERE id = ?",
                [_to_db(now), _to_db(ended), _to_db(now), row["id"]],
            )
            record = self._alert_in(db, row["id"])
            if record.incident is not None:
                self._event(db, record.incident, ended, EventKind.ALERT_CLOSED, "bot", closed_line(record, ended))
            elif record.refire_of is not None:
                self._owe_refire_message(db, record, now)  # its re-fire message counts it closed
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
        refire_of = None
        if incident is None and route.action != "ignore":
            last = self._last_incident(db, alert.source, alert.group_key, alert.alert_id)
            decided = fate(last, now, reopen_within)
            if last is not None and decided is Fate.ATTACH:
                incident = last.number  # the group's incident is open, though its alerts had closed
            elif last is not None and decided is Fate.REFIRE:
                refire_of = last.number
        cursor = db.execute(
            "INSERT INTO alerts (source, alert_id, group_key, policy, condition, summary, url, labels, severity,"
            " action, started_at, received_at, last_seen_at, notifications, incident, refire_of)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) RETURNING id",
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
                refire_of,
            ],
        )
        record = self._alert_in(db, int(cursor.fetchone()[0]))
        if incident is not None:
            self._event(db, incident, alert.started_at, EventKind.ALERT, "bot", attached_line(record))
            return AlertReceipt(record, "attached")
        if refire_of is not None:
            self._owe_refire_message(db, record, now)
            return AlertReceipt(record, "refire")
        return AlertReceipt(record, "new")

    def _last_incident(self, db: Tx, source: str, group_key: str, alert_id: str) -> LastIncident | None:
        """The latest incident an alert of the group, or this alert itself, belonged to or re-fired."""
        found: list[dict[str, Any]] = []
        for column, value in (("group_key", group_key), ("alert_id", alert_id)):
            if value:
                found += db.query(
                    "SELECT a.id, i.number, i.resolved_at FROM alerts a"
                    " JOIN incidents i ON i.number = COALESCE(a.incident, a.refire_of)"
                    f" WHERE a.source = ? AND a.{column} = ? ORDER BY a.id DESC LIMIT 1",
                    [source, value],
                )
        if not found:
            return None
        latest = max(found, key=lambda r: int(r["id"]))
        return LastIncident(int(latest["number"]), _from_db_datetime(latest["resolved_at"]))

    def _refire_repeat(self, db: Tx, record: AlertRecord, now: datetime, reopen_within: timedelta) -> AlertReceipt:
        """A re-fire notified again: its message edited while the window lasts; attached if its
        incident reopened meanwhile; once the window has passed, new, as routed (a problem that
        stays is declared or proposed after all, not hidden behind a resolved incident)."""
        assert record.refire_of is not None
        rows = list(db.query("SELECT number, resolved_at FROM incidents WHERE number = ?", [record.refire_of]))
        last = LastIncident(int(rows[0]["number"]), _from_db_datetime(rows[0]["resolved_at"])) if rows else None
        decided = fate(last, now, reopen_within)
        if decided is Fate.REFIRE:
            self._owe_refire_message(db, record, now)
            return AlertReceipt(record, "refire")
        if decided is Fate.ATTACH and last is not None:
            self._link_alert(db, record.id, last.number)
            return AlertReceipt(self._alert_in(db, record.id), "attached")
        db.execute("UPDATE alerts SET refire_of = NULL WHERE id = ?", [record.id])
        return AlertReceipt(self._alert_in(db, record.id), "new")

    def _owe_refire_message(self, db: Tx, record: AlertRecord, now: datetime) -> None:
        """The delivery that posts (or edits) the re-fire message of the record's group in its
        resolved incident, recorded in the alert's own transaction: a crash loses none."""
        assert record.refire_of is not None
        rows = list(db.query("SELECT resolved_at FROM incidents WHERE number = ?", [record.refire_of]))
        resolved_at = _from_db_datetime(rows[0]["resolved_at"]) if rows else None
        if resolved_at is None:
            return
        key = message_key(record.refire_of, resolved_at, group_token(record.source, record.group_key, record.alert_id))
        group = json.dumps({"source": record.source, "group_key": record.group_key, "alert_id": record.alert_id})
        state = "open" if record.is_open else "closed"
        firing = Firing(
            f"{key}:{record.id}:{record.notifications}:{state}",
            (Delivery(DeliveryKind.ALERT_REFIRE, key, group),),
        )
        self._record_firing(db, record.refire_of, firing, now)

    def refire_alerts(self, number: int, key: str, group: dict[str, str], until: datetime | None) -> list[AlertRecord]:
        """The alerts of one re-fire message (`key`): the group's alerts that re-fired `number`
        from its resolution on, until it was reopened (`until`), oldest first."""
        since = resolution_of(key)
        if since is None:
            return []
        sql = "SELECT * FROM alerts WHERE refire_of = ? AND source = ? AND received_at >= ?"
        params: list[Any] = [number, group.get("source", ""), _to_db(since)]
        if group.get("group_key"):
            sql += " AND group_key = ?"
            params.append(group["group_key"])
        else:
            sql += " AND group_key = '' AND alert_id = ?"
            params.append(group.get("alert_id", ""))
        if until is not None:
            sql += " AND received_at <= ?"
            params.append(_to_db(until))
        return [_alert(r) for r in self._rows(sql + " ORDER BY id", params)]

    def refires_writer(self, now: datetime) -> Callable[[Tx, Incident], None]:
        """An `also` for a reopen's `change`: the incident's re-fires still firing are attached to
        it (their lines follow, as for any alert of an open incident), and each re-fire message of
        the resolution just undone is edited to say who reopened it, in the reopen's transaction."""

        def also(db: Tx, new: Incident) -> None:
            waiting = [
                int(r["id"])
                for r in db.query(
                    "SELECT id FROM alerts WHERE refire_of = ? AND incident IS NULL AND closed_at IS NULL"
                    " AND dismissed_by IS NULL ORDER BY id",
                    [new.number],
                )
            ]
            for alert_id in waiting:
                self._link_alert(db, alert_id, new.number)
            messages: dict[str, str] = {}
            for row in db.query(
                "SELECT target, detail FROM deliveries WHERE incident = ? AND kind = ? ORDER BY id",
                [new.number, DeliveryKind.ALERT_REFIRE],
            ):
                messages[str(row["target"])] = str(row["detail"] or "")
            resolutions = {k: resolution_of(k) for k in messages}
            latest = max((at for at in resolutions.values() if at is not None), default=None)
            for key, detail in messages.items():
                if latest is not None and resolutions[key] == latest:
                    edit = Delivery(DeliveryKind.ALERT_REFIRE, key, detail)
                    self._record_firing(db, new.number, Firing(f"{key}:reopened:{now.isoformat()}", (edit,)), now)

        return also

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
            " (closed_at IS NULL AND incident IS NULL AND dismissed_by IS NULL AND refire_of IS NULL"
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
    values["refire_of"] = int(row["refire_of"]) if row.get("refire_of") is not None else None
    return AlertRecord(**values)
