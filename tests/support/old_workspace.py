"""A workspace as the code before issue 29 made it (the schema of commit a4c8b64, auto_vacuum off),
with one ended run's record in it: events, loss rows, samples. For the migration tests."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

# a dump made by that commit's code (tests/unit/test_run_columns.py loads it whole); here only its schema
DUMP = Path(__file__).with_name("old_workspaces") / "a4c8b64.sql"


def old_schema() -> str:
    """The dump's tables and indexes without its rows."""
    return "\n".join(line for line in DUMP.read_text().splitlines()
                     if not line.startswith(("INSERT INTO", "DELETE FROM")))


def make_old_workspace(workspace: Path, progress_events: int = 300) -> Path:
    """The database of a workspace from before; returns its path."""
    path = workspace / "otweb.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")  # as the old store.connect: before any table
        conn.executescript(old_schema())
        conn.execute("INSERT INTO runs (id, config_name, config_json, state, created_at, started_at, finished_at)"
                     " VALUES (1, 'demo', '{}', 'completed', 1000, 1001, 1400)")
        events = [("run", {"state": "running"}, 1001.0)]
        events += [("progress", {"global_step": n, "loss": 0.1}, 1002.0 + n) for n in range(progress_events)]
        events += [("sample_default", {"path": "samples/a.png", "global_step": 5}, 1350.0),
                   ("run", {"state": "completed"}, 1400.0)]
        conn.executemany("INSERT INTO events (run_id, name, data, time) VALUES (1, ?, ?, ?)",
                         [(name, json.dumps(data), at) for name, data, at in events])
        conn.executemany("INSERT INTO metrics (run_id, step, loss, lr, time) VALUES (1, ?, 0.1, 0.001, ?)",
                         [(n, 1002.0 + n) for n in range(progress_events)])
        conn.execute("INSERT INTO samples (run_id, kind, path, created_at) VALUES (1, 'default', 'samples/a.png', 1350)")
    finally:
        conn.close()
    return path


def counts(conn) -> dict:
    return {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("runs", "events", "metrics", "samples")}
