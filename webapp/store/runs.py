"""Runs: their rows, the queue and the history (order, pause, cancel, filters, delete).

The queue is the ``runs`` table (state ``queued``), ordered by ``queue_position`` (else id), so a
reorder never changes an id.
"""
from __future__ import annotations

import json
import time

from ..protocol import RunState
from .db import distinct
from .run_columns import FILTERS, PLAYGROUND, STARTER, TRAINING, filter_clause, values_for

MAX_CURSOR = 2**63 - 1  # above every id: the first page
QUEUE_ORDER = "COALESCE(queue_position, id), id"
PAUSED_KEY = "queue_paused"
HISTORY_FILTERS = {k: v for k, v in FILTERS.items() if k != "kind"}  # what the history page offers
# a playground session is a job in the queue, not a training: lists of runs leave it out, and the
# playground page lists the sessions (playground_sessions); the kind is a column written at creation
NOT_PLAYGROUND = f"kind = '{TRAINING}'"


def create_run(conn, config_name: str, config: dict, gpus: int = 1) -> int:
    """``gpus``: how many devices the run needs (a worker with fewer does not take it)."""
    columns = values_for(config)
    cur = conn.execute(
        "INSERT INTO runs (config_name, config_json, state, created_at, gpus, kind, model_type, method)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (config_name, json.dumps(config), RunState.QUEUED.value, time.time(), max(1, int(gpus)),
         columns["kind"], columns["model_type"], columns["method"]))
    return cur.lastrowid


def get_run(conn, run_id: int) -> dict | None:
    row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    return run_dict(row) if row else None


def latest_run(conn) -> dict | None:
    """The run a dashboard shows: the running one, else the next queued, else the newest (a
    playground session is not a training: it has its own page)."""
    # three indexed looks, each one row, rather than one order over every run
    row = (conn.execute(f"SELECT * FROM runs WHERE state = 'running' AND {NOT_PLAYGROUND} ORDER BY id DESC LIMIT 1").fetchone()
           or conn.execute(f"SELECT * FROM runs WHERE state = 'queued' AND {NOT_PLAYGROUND} ORDER BY {QUEUE_ORDER} LIMIT 1").fetchone()
           or conn.execute(f"SELECT * FROM runs WHERE {NOT_PLAYGROUND} ORDER BY id DESC LIMIT 1").fetchone())
    return run_dict(row) if row else None


def active_runs(conn) -> list[dict]:
    return [run_dict(r) for r in conn.execute(
        # the state index even where statistics (ANALYZE) call the states few: the queue is short, history long
        "SELECT * FROM runs INDEXED BY runs_state WHERE state IN ('queued', 'running') ORDER BY id")]


def requeue_for_resume(conn, run_id: int) -> bool:
    """Put an ended run back in the queue to continue from its newest backup (same id, same folder).
    A run still marked running counts as ended only when the caller has checked its worker is gone."""
    cur = conn.execute(
        # assignment = NULL: what the run's last worker still says about it (its restart's "interrupted")
        # is from an assignment the run has left, and the recorder does not let it change the state
        "UPDATE runs SET state = 'queued', resume_requested = 1, stop_requested = 0, reason = NULL, assignment = NULL,"
        " finished_at = NULL, pid = NULL, status_text = 'queued to resume'"
        " WHERE id = ? AND state IN ('failed', 'stopped', 'interrupted', 'running')", (run_id,))
    return cur.rowcount == 1


def mark_stop_requested(conn, run_id: int) -> None:
    conn.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))


def run_dict(row) -> dict:
    run = dict(row)
    run["progress"] = json.loads(run.pop("progress_json") or "null")
    run["stop_requested"] = bool(run["stop_requested"])
    run["resume_requested"] = bool(run.get("resume_requested"))
    return run


def run_config(run: dict) -> dict:
    return json.loads(run["config_json"])



# -- the queue ------------------------------------------------------------------------------

def queued_runs(conn) -> list[dict]:
    return [run_dict(r) for r in conn.execute(f"SELECT * FROM runs WHERE state = 'queued' ORDER BY {QUEUE_ORDER}")]


def has_queued(conn) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE state = 'queued' LIMIT 1").fetchone() is not None


def set_started_by(conn, run_id: int, who: str) -> None:
    conn.execute("UPDATE runs SET started_by = ? WHERE id = ?", (who, run_id))


def reorder_queue(conn, run_ids: list[int]) -> list[int]:
    """Put the named queued runs first, in the given order; the rest keep theirs after them.
    Returns the queue's new order. Unknown or no-longer-queued ids are ignored."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(f"SELECT id, COALESCE(queue_position, id) AS key FROM runs WHERE state = 'queued'"
                            f" ORDER BY {QUEUE_ORDER}").fetchall()
        current = [r["id"] for r in rows]
        wanted = [i for i in dict.fromkeys(run_ids) if i in current]
        order = wanted + [i for i in current if i not in wanted]
        # the same keys, handed out in the new order: they stay below the ids of runs queued later
        keys = [r["key"] for r in rows]
        for n in range(1, len(keys)):
            keys[n] = max(keys[n], keys[n - 1] + 1e-3)
        conn.executemany("UPDATE runs SET queue_position = ? WHERE id = ?", list(zip(keys, order)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return order


def move_in_queue(conn, run_id: int, offset: int) -> list[int]:
    """Move one queued run up (offset < 0) or down by ``offset`` places."""
    order = [r["id"] for r in queued_runs(conn)]
    if run_id not in order:
        return order
    index = order.index(run_id)
    order.insert(max(0, min(len(order) - 1, index + offset)), order.pop(index))
    return reorder_queue(conn, order)


def cancel_queued(conn, run_id: int) -> bool:
    """queued → canceled, only if the run is still queued (a worker may have just claimed it)."""
    cur = conn.execute("UPDATE runs SET state = ?, finished_at = ?, status_text = ? WHERE id = ? AND state = 'queued'",
                       (RunState.CANCELED.value, time.time(), RunState.CANCELED.value, run_id))
    return cur.rowcount == 1


def queue_paused(conn) -> bool:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (PAUSED_KEY,)).fetchone()
    return bool(row and row["value"] == "1")


def set_queue_paused(conn, paused: bool) -> None:
    conn.execute("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                 (PAUSED_KEY, "1" if paused else "0"))


# -- history --------------------------------------------------------------------------------

def history(conn, filters: dict, limit: int = 100, offset: int = 0, before: int | None = None) -> list[dict]:
    """Trainings matching ``filters``, newest first; ``before``: a run id, for the next (older)
    page (a keyset page: runs created meanwhile never shift it)."""
    where, params = filter_clause(filters)
    if before is not None:
        where += " AND id < ?"
        params.append(before)
    sql = (f"SELECT *, method AS training_method FROM runs WHERE {where}"
           " ORDER BY id DESC LIMIT ? OFFSET ?")
    return [run_dict(r) for r in conn.execute(sql, (*params, limit, offset))]


def recent_finished(conn, limit: int = 5) -> list[dict]:
    return [run_dict(r) for r in conn.execute(
        f"SELECT * FROM runs WHERE state NOT IN ('queued', 'running') AND {NOT_PLAYGROUND}"
        " ORDER BY COALESCE(finished_at, created_at) DESC LIMIT ?", (limit,))]


def newest_ended_by(conn, who: str, after_id: int, since: float) -> dict | None:
    """The newest training this person started that ended after ``since``, above run ``after_id``
    (the last one they dismissed): what the "your run finished" banner shows."""
    row = conn.execute(
        f"SELECT * FROM runs WHERE id > ? AND {STARTER} = ? AND finished_at >= ?"
        f" AND state NOT IN ('queued', 'running') AND {NOT_PLAYGROUND} ORDER BY finished_at DESC LIMIT 1",
        (after_id, who, since)).fetchone()
    return run_dict(row) if row else None


def playground_sessions(conn, limit: int = 20, before: int | None = None) -> list[dict]:
    """Past and open playground sessions, newest first, each with how many images it made;
    ``before``: a session's run id, for the next (older) page."""
    rows = conn.execute(
        "SELECT runs.*, (SELECT COUNT(*) FROM samples WHERE samples.run_id = runs.id) AS images FROM runs"
        " WHERE kind = ? AND id < ? ORDER BY id DESC LIMIT ?", (PLAYGROUND, MAX_CURSOR if before is None else before, limit))
    return [{**run_dict(r), "images": r["images"]} for r in rows]


def distinct_values(conn) -> dict:
    """The choices the history filters offer (each read from its index)."""
    def column(expression):
        return distinct(conn, "runs", expression, NOT_PLAYGROUND)
    return {"state": [s.value for s in RunState], "model_type": column("model_type"),
            "method": column("method"), "started_by": column(STARTER)}


def timeline(conn, run_id: int, limit: int = 500) -> list[dict]:
    """The run's lifecycle and status changes, oldest first."""
    rows = conn.execute("SELECT seq, name, data, time FROM events WHERE run_id = ? AND name IN"
                        " ('run', 'status', 'error', 'finished') ORDER BY seq LIMIT ?", (run_id, limit))
    return [{"seq": r["seq"], "event": r["name"], "data": json.loads(r["data"]), "time": r["time"]} for r in rows]


def delete_run_rows(conn, run_id: int) -> bool:
    """Every row of an ended run: its events, metrics, samples and itself."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.execute("DELETE FROM runs WHERE id = ? AND state NOT IN ('queued', 'running')", (run_id,))
        if cur.rowcount == 1:
            for table in ("events", "metrics", "metric_buckets", "metric_buckets_stale", "samples", "ingested",
                          "assignments", "uploads", "compaction", "run_disk"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return cur.rowcount == 1


def open_playground(conn) -> dict | None:
    """The newest queued or running playground session (a run whose config holds the marker)."""
    row = conn.execute(
        "SELECT * FROM runs WHERE state IN ('queued', 'running') AND kind = ? ORDER BY id DESC LIMIT 1",
        (PLAYGROUND,)).fetchone()
    return run_dict(row) if row else None


def run_standing(conn, run_id: int) -> tuple[str | None, str, str | None] | None:
    """(its assignment, state, reason code), for the recorder's checks of each state report; None
    when there is no such run. Cheaper than get_run: no config, no progress to decode."""
    row = conn.execute("SELECT assignment, state, reason_code FROM runs WHERE id = ?", (run_id,)).fetchone()
    return tuple(row) if row else None


def previous_of(conn, run_id: int, config_name: str) -> int | None:
    """The newest run of the same config before this one that ended with its model (completed or stopped)."""
    row = conn.execute(f"SELECT id FROM runs WHERE config_name = ? AND id < ? AND state IN ('completed', 'stopped')"
                       f" AND {NOT_PLAYGROUND} ORDER BY id DESC LIMIT 1", (config_name, run_id)).fetchone()
    return row[0] if row else None
