"""Version 1, the first release's schema, in its two forms: SQLite's and PostgreSQL's.

SQLite files made before there was a version table hold version 1 already: `migrate_sqlite_baseline`
creates it in a new file and completes an older one (the columns added after the first release)
at every start, idempotently, with sqlite_utils, before the numbered migrations run.
`BASELINE` is the same tables, columns and indexes as PostgreSQL DDL: migration 1 there
(bot/store/migrations.py). Both stay as they are: a later change to the schema is a numbered
migration, in SQL both databases accept.
"""

from __future__ import annotations

import sqlite_utils


def migrate_sqlite_baseline(db: sqlite_utils.Database) -> None:
    """Create version 1's tables and indexes in `db`, or complete those of an older file; idempotent."""
    db.table("incidents").create(
        {
            "number": int,
            "title": str,
            "severity": str,
            "status": str,
            "commander": str,
            "declared_by": str,
            "declared_at": str,
            "last_update_at": str,
            "acknowledged_at": str,
            "acknowledged_by": str,
            "resolved_at": str,
            "resolved_by": str,
            "summary": str,
            "scribe": str,
            "comms": str,
            "announcement_channel": str,
            "announcement_ts": str,
            "war_room_id": str,
            "war_room_name": str,
            "war_room_briefed": int,
            "snoozed_until": str,
            "fix_started_at": str,
            "statuspage_id": str,
            "version": int,
        },
        pk="number",
        not_null=["title", "severity", "status", "commander", "declared_by", "declared_at"],
        defaults={"war_room_briefed": 0, "version": 0},
        if_not_exists=True,
    )
    # Columns added after the first release: older databases get them here.
    existing = db.table("incidents").columns_dict
    for column in ("snoozed_until", "fix_started_at", "statuspage_id"):
        if column not in existing:
            db.table("incidents").add_column(column, str)
    db.table("incidents").create_index(["status"], if_not_exists=True)
    db.table("incidents").create_index(["war_room_id"], if_not_exists=True)
    db.table("timeline").create(
        {"id": int, "incident": int, "at": str, "kind": str, "actor": str, "text": str},
        pk="id",
        if_not_exists=True,
    )
    db.table("timeline").create_index(["incident", "at"], if_not_exists=True)
    db.table("audit").create(
        {"id": int, "incident": int, "at": str, "actor": str, "action": str, "detail": str},
        pk="id",
        if_not_exists=True,
    )
    db.table("audit").create_index(["incident"], if_not_exists=True)
    # One row per thing that came due: the primary key is what makes "fires once" true.
    db.table("firings").create(
        {"incident": int, "key": str, "fired_at": str},
        pk=("incident", "key"),
        if_not_exists=True,
    )
    db.table("deliveries").create(
        {
            "id": int,
            "incident": int,
            "firing_key": str,
            "kind": str,
            "target": str,
            "detail": str,
            "status": str,
            "attempts": int,
            "next_attempt_at": str,
            "last_error": str,
            "user": str,
            "channel": str,
            "ts": str,
            "thread_ts": str,
            "created_at": str,
            "sent_at": str,
        },
        pk="id",
        defaults={"status": "pending", "attempts": 0},
        if_not_exists=True,
    )
    db.table("deliveries").create_index(["status", "next_attempt_at"], if_not_exists=True)
    db.table("deliveries").create_index(["incident"], if_not_exists=True)
    # Posts under way: if the process dies mid-post, start-up asks Slack whether it landed.
    db.table("attempts").create({"key": str, "channel": str, "at": str, "thread_ts": str}, pk="key", if_not_exists=True)
    # Columns added after the first release: older databases get them here.
    for table, column in (("attempts", "thread_ts"), ("deliveries", "thread_ts")):
        if column not in db.table(table).columns_dict:
            db.table(table).add_column(column, str)
    _migrate_schedules(db)
    _migrate_proposals(db)
    _migrate_review(db)
    _migrate_alerts(db)


def _migrate_schedules(db: sqlite_utils.Database) -> None:
    # Overrides are never deleted: clearing one stamps it, so the table is its own history.
    db.table("oncall_overrides").create(
        {
            "id": int,
            "schedule": str,
            "user": str,
            "starts_at": str,
            "ends_at": str,
            "created_by": str,
            "created_at": str,
            "cleared_by": str,
            "cleared_at": str,
        },
        pk="id",
        if_not_exists=True,
    )
    db.table("oncall_overrides").create_index(["schedule", "ends_at"], if_not_exists=True)
    # One row per schedule and handoff instant: the primary key is what makes "noticed once" true.
    db.table("handoffs").create(
        {"schedule": str, "at": str, "claimed_at": str}, pk=("schedule", "at"), if_not_exists=True
    )
    # The DMs a handoff owes (the incoming and the outgoing person), sent until Slack accepts them.
    db.table("handoff_notices").create(
        {"id": int, "schedule": str, "at": str, "side": str, "user": str, "text": str, "sent_at": str},
        pk="id",
        if_not_exists=True,
    )


def _migrate_proposals(db: sqlite_utils.Database) -> None:
    # Proposed production changes: the row is what makes "sent at most once" true.
    db.table("proposals").create(
        {
            "id": int,
            "incident": int,
            "kind": str,
            "target": str,
            "current": str,
            "serving_revision": str,
            "pinned": int,
            "proposer": str,
            "created_at": str,
            "status": str,
            "outcome": str,
            "move_traffic": int,
            "confirmed_by": str,
            "confirmed_at": str,
            "finished_at": str,
            "channel": str,
            "ts": str,
        },
        pk="id",
        not_null=["incident", "kind", "target", "proposer", "created_at", "status"],
        defaults={"status": "pending", "outcome": "", "pinned": 0, "move_traffic": 0},
        if_not_exists=True,
    )
    db.table("proposals").create_index(["status"], if_not_exists=True)


def _migrate_review(db: sqlite_utils.Database) -> None:
    # A pinned message is captured once per incident, however often the reaction comes.
    db.table("pinned_messages").create(
        {"incident": int, "channel": str, "ts": str, "pinned_at": str},
        pk=("incident", "channel", "ts"),
        if_not_exists=True,
    )
    db.table("followups").create(
        {"id": int, "incident": int, "at": str, "actor": str, "text": str}, pk="id", if_not_exists=True
    )
    db.table("followups").create_index(["incident"], if_not_exists=True)
    db.table("resolutions").create(
        {
            "incident": int,
            "at": str,
            "actor": str,
            "summary": str,
            "root_cause": str,
            "customer_impact": str,
        },
        pk="incident",
        if_not_exists=True,
    )
    db.table("postmortems").create(
        {
            "incident": int,
            "markdown": str,
            "generated_at": str,
            "file_id": str,
            "permalink": str,
            "channel": str,
        },
        pk="incident",
        if_not_exists=True,
    )
    # Stats read a window of declares; the index keeps that a range scan however long the history.
    db.table("incidents").create_index(["declared_at"], if_not_exists=True)


def _migrate_alerts(db: sqlite_utils.Database) -> None:
    if "detected_at" not in db.table("incidents").columns_dict:
        db.table("incidents").add_column("detected_at", str)
    db.table("alerts").create(
        {
            "id": int,
            "source": str,
            "alert_id": str,
            "group_key": str,
            "policy": str,
            "condition": str,
            "summary": str,
            "url": str,
            "labels": str,
            "severity": str,
            "action": str,
            "started_at": str,
            "ended_at": str,
            "received_at": str,
            "last_seen_at": str,
            "notifications": int,
            "closed_at": str,
            "incident": int,
            "proposal_channel": str,
            "proposal_ts": str,
            "dismissed_by": str,
            "link_noted": int,
            "close_noted": int,
        },
        pk="id",
        not_null=["source", "alert_id", "policy", "action", "started_at", "received_at"],
        defaults={"notifications": 1, "link_noted": 0, "close_noted": 0},
        if_not_exists=True,
    )
    # The same alert can be open only once: two deliveries of it racing in cannot both be new.
    db.execute(
        "CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_once ON alerts (source, alert_id) WHERE closed_at IS NULL"
    )
    db.table("alerts").create_index(["incident"], if_not_exists=True)
    db.table("alerts").create_index(["source", "group_key"], if_not_exists=True)


# The schema as SQLite databases of the first release hold it (migrate_sqlite_baseline builds that
# with sqlite_utils): the same tables, columns and indexes, with identity columns for the keys
# SQLite numbers itself. Times stay ISO-8601 text in UTC, compared as text in both stores.
_BASELINE_SQL = """
CREATE TABLE IF NOT EXISTS "incidents" (
   "number" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "title" TEXT NOT NULL,
   "severity" TEXT NOT NULL,
   "status" TEXT NOT NULL,
   "commander" TEXT NOT NULL,
   "declared_by" TEXT NOT NULL,
   "declared_at" TEXT NOT NULL,
   "last_update_at" TEXT,
   "acknowledged_at" TEXT,
   "acknowledged_by" TEXT,
   "resolved_at" TEXT,
   "resolved_by" TEXT,
   "summary" TEXT,
   "scribe" TEXT,
   "comms" TEXT,
   "announcement_channel" TEXT,
   "announcement_ts" TEXT,
   "war_room_id" TEXT,
   "war_room_name" TEXT,
   "war_room_briefed" BIGINT DEFAULT 0,
   "snoozed_until" TEXT,
   "fix_started_at" TEXT,
   "statuspage_id" TEXT,
   "version" BIGINT DEFAULT 0,
   "detected_at" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_incidents_status" ON "incidents" ("status");
CREATE INDEX IF NOT EXISTS "idx_incidents_war_room_id" ON "incidents" ("war_room_id");
CREATE TABLE IF NOT EXISTS "timeline" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "incident" BIGINT,
   "at" TEXT,
   "kind" TEXT,
   "actor" TEXT,
   "text" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_timeline_incident_at" ON "timeline" ("incident", "at");
CREATE TABLE IF NOT EXISTS "audit" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "incident" BIGINT,
   "at" TEXT,
   "actor" TEXT,
   "action" TEXT,
   "detail" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_audit_incident" ON "audit" ("incident");
CREATE TABLE IF NOT EXISTS "firings" (
   "incident" BIGINT,
   "key" TEXT,
   "fired_at" TEXT,
   PRIMARY KEY ("incident", "key")
);
CREATE TABLE IF NOT EXISTS "deliveries" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "incident" BIGINT,
   "firing_key" TEXT,
   "kind" TEXT,
   "target" TEXT,
   "detail" TEXT,
   "status" TEXT DEFAULT 'pending',
   "attempts" BIGINT DEFAULT 0,
   "next_attempt_at" TEXT,
   "last_error" TEXT,
   "user" TEXT,
   "channel" TEXT,
   "ts" TEXT,
   "thread_ts" TEXT,
   "created_at" TEXT,
   "sent_at" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_deliveries_status_next_attempt_at" ON "deliveries" ("status", "next_attempt_at");
CREATE INDEX IF NOT EXISTS "idx_deliveries_incident" ON "deliveries" ("incident");
CREATE TABLE IF NOT EXISTS "attempts" (
   "key" TEXT PRIMARY KEY,
   "channel" TEXT,
   "at" TEXT,
   "thread_ts" TEXT
);
CREATE TABLE IF NOT EXISTS "oncall_overrides" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "schedule" TEXT,
   "user" TEXT,
   "starts_at" TEXT,
   "ends_at" TEXT,
   "created_by" TEXT,
   "created_at" TEXT,
   "cleared_by" TEXT,
   "cleared_at" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_oncall_overrides_schedule_ends_at" ON "oncall_overrides" ("schedule", "ends_at");
CREATE TABLE IF NOT EXISTS "handoffs" (
   "schedule" TEXT,
   "at" TEXT,
   "claimed_at" TEXT,
   PRIMARY KEY ("schedule", "at")
);
CREATE TABLE IF NOT EXISTS "handoff_notices" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "schedule" TEXT,
   "at" TEXT,
   "side" TEXT,
   "user" TEXT,
   "text" TEXT,
   "sent_at" TEXT
);
CREATE TABLE IF NOT EXISTS "proposals" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "incident" BIGINT NOT NULL,
   "kind" TEXT NOT NULL,
   "target" TEXT NOT NULL,
   "current" TEXT,
   "serving_revision" TEXT,
   "pinned" BIGINT DEFAULT 0,
   "proposer" TEXT NOT NULL,
   "created_at" TEXT NOT NULL,
   "status" TEXT NOT NULL DEFAULT 'pending',
   "outcome" TEXT DEFAULT '',
   "move_traffic" BIGINT DEFAULT 0,
   "confirmed_by" TEXT,
   "confirmed_at" TEXT,
   "finished_at" TEXT,
   "channel" TEXT,
   "ts" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_proposals_status" ON "proposals" ("status");
CREATE TABLE IF NOT EXISTS "pinned_messages" (
   "incident" BIGINT,
   "channel" TEXT,
   "ts" TEXT,
   "pinned_at" TEXT,
   PRIMARY KEY ("incident", "channel", "ts")
);
CREATE TABLE IF NOT EXISTS "followups" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "incident" BIGINT,
   "at" TEXT,
   "actor" TEXT,
   "text" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_followups_incident" ON "followups" ("incident");
CREATE TABLE IF NOT EXISTS "resolutions" (
   "incident" BIGINT PRIMARY KEY,
   "at" TEXT,
   "actor" TEXT,
   "summary" TEXT,
   "root_cause" TEXT,
   "customer_impact" TEXT
);
CREATE TABLE IF NOT EXISTS "postmortems" (
   "incident" BIGINT PRIMARY KEY,
   "markdown" TEXT,
   "generated_at" TEXT,
   "file_id" TEXT,
   "permalink" TEXT,
   "channel" TEXT
);
CREATE INDEX IF NOT EXISTS "idx_incidents_declared_at" ON "incidents" ("declared_at");
CREATE TABLE IF NOT EXISTS "alerts" (
   "id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
   "source" TEXT NOT NULL,
   "alert_id" TEXT NOT NULL,
   "group_key" TEXT,
   "policy" TEXT NOT NULL,
   "condition" TEXT,
   "summary" TEXT,
   "url" TEXT,
   "labels" TEXT,
   "severity" TEXT,
   "action" TEXT NOT NULL,
   "started_at" TEXT NOT NULL,
   "ended_at" TEXT,
   "received_at" TEXT NOT NULL,
   "last_seen_at" TEXT,
   "notifications" BIGINT DEFAULT 1,
   "closed_at" TEXT,
   "incident" BIGINT,
   "proposal_channel" TEXT,
   "proposal_ts" TEXT,
   "dismissed_by" TEXT,
   "link_noted" BIGINT DEFAULT 0,
   "close_noted" BIGINT DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open_once ON alerts (source, alert_id) WHERE closed_at IS NULL;
CREATE INDEX IF NOT EXISTS "idx_alerts_incident" ON "alerts" ("incident");
CREATE INDEX IF NOT EXISTS "idx_alerts_source_group_key" ON "alerts" ("source", "group_key");
"""
BASELINE = tuple(statement.strip() for statement in _BASELINE_SQL.split(";") if statement.strip())
