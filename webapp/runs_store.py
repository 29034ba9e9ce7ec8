"""SQL for the queue and the run history: order, pause, cancel, filters, delete, loss buckets.

Plain functions over a ``sqlite3.Connection``, like ``store``; the queue is the ``runs`` table
(state ``queued``), ordered by ``queue_position`` (else id), so a reorder never changes an id.
"""
from __future__ import annotations

import json
import time

from .store import _run_dict
from .trainer.protocol import RunState

QUEUE_ORDER = "COALESCE(queue_position, id), id"
PAUSED_KEY = "queue_paused"
HISTORY_FILTERS = {  # name: SQL (one ? each)
    "state": "state = ?",
    "config": "config_name LIKE '%' || ? || '%'",
    "model_type": "json_extract(config_json, '$.model_type') = ?",
    "method": "json_extract(config_json, '$.training_method') = ?",
    "started_by": "COALESCE(started_by, 'local') = ?",
}


# -- the queue ------------------------------------------------------------------------------

def queued_runs(conn) -> list[dict]:
    return [_run_dict(r) for r in conn.execute(f"SELECT * FROM runs WHERE state = 'queued' ORDER BY {QUEUE_ORDER}")]


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

def history(conn, filters: dict, limit: int = 100, offset: int = 0) -> list[dict]:
    where = [HISTORY_FILTERS[k] for k, v in filters.items() if k in HISTORY_FILTERS and v not in (None, "")]
    params = [v for k, v in filters.items() if k in HISTORY_FILTERS and v not in (None, "")]
    sql = ("SELECT *, json_extract(config_json, '$.model_type') AS model_type,"
           " json_extract(config_json, '$.training_method') AS training_method FROM runs"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ? OFFSET ?")
    return [_run_dict(r) for r in conn.execute(sql, (*params, limit, offset))]


def recent_finished(conn, limit: int = 5) -> list[dict]:
    return [_run_dict(r) for r in conn.execute(
        "SELECT * FROM runs WHERE state NOT IN ('queued', 'running') ORDER BY COALESCE(finished_at, created_at) DESC"
        " LIMIT ?", (limit,))]


def distinct_values(conn) -> dict:
    """The choices the history filters offer."""
    def column(sql):
        return [r[0] for r in conn.execute(sql) if r[0] is not None]
    return {"state": [s.value for s in RunState],
            "model_type": column("SELECT DISTINCT json_extract(config_json, '$.model_type') FROM runs ORDER BY 1"),
            "method": column("SELECT DISTINCT json_extract(config_json, '$.training_method') FROM runs ORDER BY 1"),
            "started_by": column("SELECT DISTINCT COALESCE(started_by, 'local') FROM runs ORDER BY 1")}


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
            for table in ("events", "metrics", "samples"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return cur.rowcount == 1


# -- loss, downsampled in SQL: min and max per bucket, so spikes survive ----------------------

def loss_buckets(conn, run_id: int, buckets: int) -> tuple[list[dict], int]:
    """(points, total rows). Fewer rows than 2 × buckets: every row. Else per step bucket the row with
    the lowest and the one with the highest loss (SQLite takes bare columns from that row), with the
    bucket's mean lr; at most 2 × buckets points, in step order."""
    low, high, total = conn.execute(
        "SELECT MIN(step), MAX(step), COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()
    if not total:
        return [], 0
    if total <= 2 * buckets:
        rows = conn.execute("SELECT step, loss, lr FROM metrics WHERE run_id = ? ORDER BY step", (run_id,))
        return [{"step": r[0], "loss": r[1], "lr": r[2], "n": 1} for r in rows], total
    width = (high - low + 1) / buckets
    bucket = f"CAST((step - {int(low)}) / {width!r} AS INTEGER)"
    lows = conn.execute(f"SELECT {bucket} AS b, MIN(loss), step FROM metrics WHERE run_id = ? AND loss IS NOT NULL"
                        " GROUP BY b", (run_id,)).fetchall()
    highs = conn.execute(f"SELECT {bucket} AS b, MAX(loss), step FROM metrics WHERE run_id = ? AND loss IS NOT NULL"
                         " GROUP BY b", (run_id,)).fetchall()
    extra = {r[0]: (r[1], r[2]) for r in conn.execute(
        f"SELECT {bucket} AS b, AVG(lr), COUNT(*) FROM metrics WHERE run_id = ? GROUP BY b", (run_id,))}
    points = []
    for (b, lo, lo_step), (_, hi, hi_step) in zip(lows, highs):
        lr, count = extra.get(b, (None, 1))
        pair = [(lo_step, lo), (hi_step, hi)] if lo_step <= hi_step else [(hi_step, hi), (lo_step, lo)]
        if pair[0][0] == pair[1][0]:
            pair = pair[:1]
        points += [{"step": s, "loss": v, "lr": lr, "n": count / len(pair)} for s, v in pair]
    return points, total
