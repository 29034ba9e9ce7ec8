"""SQLite, the durable record: runs, their numbered events, loss metrics and samples.

Plain functions over a ``sqlite3.Connection`` so the web (one connection per request) and the
worker (one per thread) share them. WAL mode lets the web read while the worker writes.
"""
from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path

from . import metric_buckets
from .trainer.protocol import SAMPLE_EVENTS, Event, RunState, dumps

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
    time REAL NOT NULL
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


def connect(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it fast
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA + metric_buckets.BUCKETS_SCHEMA)
    # columns added after a workspace was first made
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(runs)")}
    for name, kind in (("resume_requested", "INTEGER NOT NULL DEFAULT 0"), ("queue_position", "REAL"),
                       ("started_by", "TEXT")):
        if name not in columns:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    if setting(conn, metric_buckets.BUCKETS_KEY) != metric_buckets.BUCKETS_VERSION:  # from before them
        metric_buckets.mark_all_buckets_stale(conn)


def setting(conn, key: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


@contextlib.contextmanager
def transaction(conn, mode: str = "IMMEDIATE"):
    """One transaction (IMMEDIATE: a writer; DEFERRED: a consistent read snapshot under WAL), or
    the caller's, if one is open already."""
    if conn.in_transaction:
        yield conn
        return
    conn.execute(f"BEGIN {mode}")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# -- runs ---------------------------------------------------------------------------------

def create_run(conn, config_name: str, config: dict) -> int:
    cur = conn.execute(
        "INSERT INTO runs (config_name, config_json, state, created_at) VALUES (?, ?, ?, ?)",
        (config_name, json.dumps(config), RunState.QUEUED.value, time.time()))
    return cur.lastrowid


def get_run(conn, run_id: int) -> dict | None:
    row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    return _run_dict(row) if row else None


def latest_run(conn) -> dict | None:
    """The run a dashboard shows: the running one, else the next queued, else the newest."""
    row = conn.execute(
        "SELECT * FROM runs ORDER BY CASE state WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END,"
        " CASE state WHEN 'queued' THEN COALESCE(queue_position, id) ELSE -id END LIMIT 1").fetchone()
    return _run_dict(row) if row else None


def list_runs(conn, limit: int = 20) -> list[dict]:
    return [_run_dict(r) for r in conn.execute("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]


def active_runs(conn) -> list[dict]:
    return [_run_dict(r) for r in conn.execute(
        "SELECT * FROM runs WHERE state IN ('queued', 'running') ORDER BY id")]


def claim_next_run(conn, worker: str) -> dict | None:
    """Atomically move the first queued run (queue order, else id) to running for this worker
    (several workers may race); none while the queue is paused (runs_store.set_queue_paused)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT id FROM runs WHERE state = 'queued' AND NOT EXISTS (SELECT 1 FROM settings"
            " WHERE key = 'queue_paused' AND value = '1') ORDER BY COALESCE(queue_position, id), id LIMIT 1"
        ).fetchone()
        if row is None:
            conn.execute("COMMIT")
            return None
        conn.execute("UPDATE runs SET state = 'running', worker = ?, started_at = ?, status_text = 'starting'"
                     " WHERE id = ?", (worker, time.time(), row["id"]))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return get_run(conn, row["id"])


def requeue_for_resume(conn, run_id: int) -> bool:
    """Put an ended run back in the queue to continue from its newest backup (same id, same folder).
    A run still marked running counts as ended only when the caller has checked its worker is gone."""
    cur = conn.execute(
        "UPDATE runs SET state = 'queued', resume_requested = 1, stop_requested = 0, reason = NULL,"
        " finished_at = NULL, pid = NULL, status_text = 'queued to resume'"
        " WHERE id = ? AND state IN ('failed', 'stopped', 'interrupted', 'running')", (run_id,))
    return cur.rowcount == 1


def mark_stop_requested(conn, run_id: int) -> None:
    conn.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))


def runs_of_worker(conn, worker: str, state: RunState) -> list[dict]:
    return [_run_dict(r) for r in conn.execute(
        "SELECT * FROM runs WHERE worker = ? AND state = ?", (worker, state.value))]


def _run_dict(row) -> dict:
    run = dict(row)
    run["progress"] = json.loads(run.pop("progress_json") or "null")
    run["stop_requested"] = bool(run["stop_requested"])
    run["resume_requested"] = bool(run.get("resume_requested"))
    return run


def run_config(run: dict) -> dict:
    return json.loads(run["config_json"])


# -- events: the numbered log that SSE replays --------------------------------------------

def append_event(conn, run_id: int, event: dict) -> dict:
    """Record one event and fold it into the run's row, in one transaction. Returns it numbered."""
    name, data, at = event["event"], event.get("data") or {}, event.get("time") or time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        seq = conn.execute("INSERT INTO events (run_id, name, data, time) VALUES (?, ?, ?, ?)",
                           (run_id, name, dumps(data), at)).lastrowid
        _fold_into_run(conn, run_id, name, data, at)
        if name in SAMPLE_EVENTS:
            _record_sample(conn, run_id, name, data, at)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return {"seq": seq, "run_id": run_id, "event": name, "data": data, "time": at}


def _fold_into_run(conn, run_id: int, name: str, data: dict, at: float) -> None:
    if name == Event.PROGRESS:
        conn.execute("UPDATE runs SET progress_json = ? WHERE id = ?", (dumps(data), run_id))
    elif name == Event.STATUS:
        conn.execute("UPDATE runs SET status_text = ? WHERE id = ?", (data.get("text", ""), run_id))
    elif name == Event.FINISHED:
        conn.execute("UPDATE runs SET output_path = ? WHERE id = ?", (data.get("output"), run_id))
    elif name == Event.RUN:
        state = RunState(data["state"])
        finished_at = None if state.is_active else at
        if data.get("pid"):
            conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (data["pid"], run_id))
        conn.execute("UPDATE runs SET state = ?, reason = COALESCE(?, reason), finished_at = ?,"
                     " status_text = CASE WHEN ? THEN status_text ELSE ? END WHERE id = ?",
                     (state.value, data.get("reason"), finished_at, state.is_active, state.value, run_id))


def _record_sample(conn, run_id: int, name: str, data: dict, at: float) -> None:
    settings = {k: v for k, v in data.items() if k not in ("path", "prompt", "global_step", "epoch")}
    sample_id = conn.execute(
        "INSERT INTO samples (run_id, kind, path, prompt, settings_json, global_step, epoch, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, "custom" if name == Event.SAMPLE_CUSTOM else "default", data["path"],
         data.get("prompt", ""), dumps(settings), data.get("global_step"), data.get("epoch"), at)).lastrowid
    data["sample_id"] = sample_id  # travels with the event so a page can link the image


def events_since(conn, after_seq: int, run_id: int | None = None, limit: int = 1000) -> list[dict]:
    query = "SELECT * FROM events WHERE seq > ?" + (" AND run_id = ?" if run_id is not None else "")
    params = (after_seq, run_id) if run_id is not None else (after_seq,)
    rows = conn.execute(query + " ORDER BY seq LIMIT ?", (*params, limit))
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in rows]


def recent_events(conn, run_id: int, name: str, limit: int = 30) -> list[dict]:
    rows = conn.execute("SELECT * FROM events WHERE run_id = ? AND name = ? ORDER BY seq DESC LIMIT ?",
                        (run_id, name, limit)).fetchall()
    return [{"seq": r["seq"], "run_id": r["run_id"], "event": r["name"], "data": json.loads(r["data"]),
             "time": r["time"]} for r in reversed(rows)]


def chart_version(conn, run_id: int) -> tuple:
    """What a run's loss chart is drawn from, in a few index lookups: the newest event (samples,
    saves and backups come with one), the number of loss rows (from the coarsest summary
    buckets: one or two rows) and whether the summary waits to be rebuilt."""
    return conn.execute(
        "SELECT (SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = :run),"
        " (SELECT COALESCE(SUM(n), 0) FROM metric_buckets WHERE run_id = :run AND width = :width),"
        " (SELECT COUNT(*) FROM metric_buckets_stale WHERE run_id = :run)",
        {"run": run_id, "width": metric_buckets.BUCKET_WIDTHS[-1]}).fetchone()[:]


def last_seq(conn) -> int:
    return conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]


# -- metrics: every loss value, for charts ------------------------------------------------

def append_metrics(conn, run_id: int, rows: list[tuple]) -> None:
    """rows: (step, loss, lr, time). A trigger adds them to the run's metric_buckets, in the same
    transaction."""
    rows = [(run_id, *row) for row in rows]
    if not rows:
        return
    with transaction(conn):
        conn.executemany("INSERT INTO metrics (run_id, step, loss, lr, time) VALUES (?, ?, ?, ?, ?)", rows)


def recent_losses(conn, run_id: int, limit: int = 300) -> list[float]:
    """The last ``limit`` loss values in step order (uses the (run_id, step) index, no full scan)."""
    rows = conn.execute("SELECT loss FROM metrics WHERE run_id = ? AND loss IS NOT NULL"
                        " ORDER BY step DESC LIMIT ?", (run_id, limit)).fetchall()
    return [row[0] for row in reversed(rows)]


# -- samples --------------------------------------------------------------------------------

def get_sample(conn, sample_id: int) -> dict | None:
    row = conn.execute("SELECT * FROM samples WHERE id = ?", (sample_id,)).fetchone()
    return _sample_dict(row) if row else None


def list_samples(conn, run_id: int | None = None, limit: int = 50) -> list[dict]:
    if run_id is None:
        rows = conn.execute("SELECT * FROM samples ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = conn.execute("SELECT * FROM samples WHERE run_id = ? ORDER BY id DESC LIMIT ?", (run_id, limit))
    return [_sample_dict(r) for r in rows]


def _sample_dict(row) -> dict:
    sample = dict(row)
    sample["settings"] = json.loads(sample.pop("settings_json"))
    return sample
