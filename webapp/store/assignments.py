"""The fleet's part of the record: which worker an assignment went to, which stream entries are
recorded already (the recorder's idempotence key), and where a queued run may go.

An assignment id is made by the control plane when it hands a run to a worker; the worker numbers
every entry it sends by (assignment, n), and ``first_times`` answers whether each (run, assignment, n)
is new, inside the transaction that records it: an entry read twice is recorded once.
"""
from __future__ import annotations

import json
import time

from .db import transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS assignments (
    id TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL,
    worker TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_run ON assignments(run_id);
CREATE TABLE IF NOT EXISTS ingested (
    run_id INTEGER NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (run_id, source, n)
) WITHOUT ROWID;
"""
RUN_COLUMNS = (("target_json", "TEXT"), ("assignment", "TEXT"))


def init_fleet_schema(conn, run_columns: set[str]) -> None:
    conn.executescript(SCHEMA)
    for name, kind in RUN_COLUMNS:
        if name not in run_columns:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")


def set_target(conn, run_id: int, target: dict | None) -> None:
    """Where a queued run may go: {} any worker, {"worker": name}, or {"labels": [..]} (all of them)."""
    conn.execute("UPDATE runs SET target_json = ? WHERE id = ?", (json.dumps(target) if target else None, run_id))


def target_of(run: dict) -> dict:
    try:
        return json.loads(run.get("target_json") or "null") or {}
    except ValueError:
        return {}


def assign(conn, run_id: int, worker: str, assignment_id: str) -> bool:
    """queued -> running on ``worker``, only if still queued (a cancel may have come first)."""
    with transaction(conn):
        cur = conn.execute(
            # a resumed run starts again from its backup, at a step below the one it had reached: its
            # progress starts anew with this attempt (the record's progress never moves backwards)
            "UPDATE runs SET state = 'running', worker = ?, assignment = ?, started_at = ?, pid = NULL,"
            " progress_json = CASE WHEN resume_requested THEN NULL ELSE progress_json END,"
            " status_text = ? WHERE id = ? AND state = 'queued'",
            (worker, assignment_id, time.time(), f"starting on {worker}", run_id))
        if cur.rowcount != 1:
            return False
        conn.execute("INSERT INTO assignments (id, run_id, worker, created_at) VALUES (?, ?, ?, ?)",
                     (assignment_id, run_id, worker, time.time()))
    return True


def unassign(conn, run_id: int, assignment_id: str) -> None:
    """The assignment never reached the worker (Redis failed): the run is queued again."""
    with transaction(conn):
        conn.execute("UPDATE runs SET state = 'queued', assignment = NULL, started_at = NULL,"
                     " status_text = 'queued' WHERE id = ? AND assignment = ?", (run_id, assignment_id))
        conn.execute("DELETE FROM assignments WHERE id = ?", (assignment_id,))


def assignment(conn, assignment_id: str) -> dict | None:
    row = conn.execute("SELECT a.*, r.assignment AS current FROM assignments a JOIN runs r ON r.id = a.run_id"
                       " WHERE a.id = ?", (assignment_id,)).fetchone()
    return dict(row) if row else None


def attempt_number(conn, assignment_id: str) -> int:
    """Which attempt of its run an assignment is: 1 for the first, n for the run's nth assignment."""
    return conn.execute("SELECT COUNT(*) FROM assignments WHERE run_id = (SELECT run_id FROM assignments WHERE id = ?)"
                        " AND rowid <= (SELECT rowid FROM assignments WHERE id = ?)",
                        (assignment_id, assignment_id)).fetchone()[0] or 1


def first_times(conn, keys: list[tuple[int, str, int]]) -> list[bool]:
    """Whether each (run, assignment, n) key is recorded for the first time, in order, inside the caller's write
    transaction (nobody else inserts meanwhile): one range lookup per (run, assignment), since a
    batch is mostly a run of consecutive numbers, and one executemany for the new keys. A key
    twice in one batch (a spool replayed) is first only once."""
    spans: dict[tuple[int, str], list[int]] = {}
    for run_id, source, n in keys:
        span = spans.setdefault((run_id, source), [n, n, 0])
        span[0], span[1], span[2] = min(span[0], n), max(span[1], n), span[2] + 1
    known = set()
    for (run_id, source), (low, high, count) in spans.items():
        if high - low > 4 * count + 64:  # scattered numbers: look each up rather than scan the range
            known.update(key for key in keys if key[:2] == (run_id, source) and conn.execute(
                "SELECT 1 FROM ingested WHERE run_id = ? AND source = ? AND n = ?", key).fetchone())
            continue
        known.update((run_id, source, row[0]) for row in conn.execute(
            "SELECT n FROM ingested WHERE run_id = ? AND source = ? AND n BETWEEN ? AND ?",
            (run_id, source, low, high)))
    firsts, fresh = [], []
    for key in keys:
        first = key not in known
        if first:
            known.add(key)
            fresh.append(key)
        firsts.append(first)
    conn.executemany("INSERT INTO ingested (run_id, source, n) VALUES (?, ?, ?)", fresh)
    return firsts


def running_on(conn) -> dict[str, int]:
    """worker -> the run the record has running on it."""
    return {r["worker"]: r["id"] for r in conn.execute("SELECT id, worker FROM runs WHERE state = 'running'")
            if r["worker"]}


def runs_by_worker(conn, limit: int = 500) -> dict[str, int]:
    """worker -> how many runs it has been given (the fleet page's history column)."""
    return {r[0]: r[1] for r in conn.execute("SELECT worker, COUNT(DISTINCT run_id) FROM assignments GROUP BY worker")}
