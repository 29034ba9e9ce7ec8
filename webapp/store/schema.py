"""The record's schema: tables, indexes, and the columns added since a workspace was first made."""
from __future__ import annotations

import sqlite3

from . import loss_summary, assignments, compaction, dataset_manifests, disk_use, model_versions, notifications, run_columns, uploads
from .db import setting

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_name TEXT NOT NULL,
    config_json TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',
    status_text TEXT NOT NULL DEFAULT '',
    progress_json TEXT,
    worker TEXT,
    pid INTEGER,
    reason TEXT,
    output_path TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    resume_requested INTEGER NOT NULL DEFAULT 0,
    queue_position REAL,
    started_by TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, seq);
CREATE TABLE IF NOT EXISTS metrics (
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    loss REAL,
    lr REAL,
    time REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, step);
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}',
    global_step INTEGER,
    epoch INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_run ON samples(run_id, id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def init_schema(conn: sqlite3.Connection) -> None:
    compaction.init(conn)  # first: auto_vacuum is set before a new workspace's first table
    conn.executescript(SCHEMA + loss_summary.BUCKETS_SCHEMA + model_versions.SCHEMA + uploads.SCHEMA
                       + notifications.SCHEMA)
    # columns added after a workspace was first made
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in (("resume_requested", "INTEGER NOT NULL DEFAULT 0"), ("queue_position", "REAL"),
                       ("started_by", "TEXT"), ("skipped_files", "INTEGER NOT NULL DEFAULT 0"),
                       ("gpus", "INTEGER NOT NULL DEFAULT 1"), ("reason_code", "TEXT")):
        if name not in columns:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    assignments.init_fleet_schema(conn, columns)
    run_columns.init(conn, columns)  # the lists' filter columns and indexes (filled once for older runs)
    # which attempt (assignment) of a resumed run a loss row came from; rows a later attempt redid
    metric_columns = {row["name"] for row in conn.execute("PRAGMA table_info(metrics)")}
    for name in ("attempt", "superseded"):
        if name not in metric_columns:
            conn.execute(f"ALTER TABLE metrics ADD COLUMN {name} INTEGER NOT NULL DEFAULT {int(name == 'attempt')}")
    if setting(conn, loss_summary.BUCKETS_KEY) != loss_summary.BUCKETS_VERSION:  # from before them
        loss_summary.mark_all_buckets_stale(conn)
    disk_use.init(conn)
    dataset_manifests.init_schema(conn)
    model_versions.backfill(conn)  # the versions of runs recorded before model versions: once
