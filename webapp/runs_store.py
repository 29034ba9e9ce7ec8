"""SQL for the queue and the run history: order, pause, cancel, filters, delete, loss buckets.

Plain functions over a ``sqlite3.Connection``, like ``store``; the queue is the ``runs`` table
(state ``queued``), ordered by ``queue_position`` (else id), so a reorder never changes an id.
"""
from __future__ import annotations

import json
import time

from . import metric_buckets, store
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
            for table in ("events", "metrics", "metric_buckets", "metric_buckets_stale", "samples"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return cur.rowcount == 1


# -- loss, downsampled: min and max per bucket, so spikes survive --------------------------------

# a chart bucket spans at least this many stored summary buckets (metric_buckets.BUCKET_WIDTHS), so chart
# buckets differ in width by at most a quarter (the summary buckets are whole)
SUMMARY_PER_BUCKET = 4


def loss_buckets(conn, run_id: int, buckets: int) -> tuple[list[dict], int]:
    """(points, total rows). Fewer rows than 2 × buckets: every row. Else the steps are cut into
    ``buckets`` contiguous buckets; per bucket, the row with the lowest and the one with the highest
    loss (ties: the earliest), with the bucket's mean lr; at most 2 × buckets points, in step order.

    Read from the run's summary (store.metric_buckets, kept as rows are appended) at the coarsest
    width that still gives SUMMARY_PER_BUCKET summary buckets per chart bucket: O(points) rows,
    whatever the run's length. A short run (< SUMMARY_PER_BUCKET × buckets × 4 steps) is read per step."""
    metric_buckets.refresh_buckets(conn, run_id)  # only if its rows were changed or deleted since
    with store.transaction(conn, "DEFERRED"):  # one snapshot: the worker may be appending
        low = conn.execute("SELECT MIN(step) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
        if low is None:
            return [], 0
        high = conn.execute("SELECT MAX(step) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]
        total = int(conn.execute("SELECT TOTAL(n) FROM metric_buckets WHERE run_id = ? AND width = ?",
                                 (run_id, metric_buckets.BUCKET_WIDTHS[-1])).fetchone()[0])
        if total <= 2 * buckets:
            rows = conn.execute("SELECT step, loss, lr FROM metrics WHERE run_id = ? ORDER BY step", (run_id,))
            return [{"step": r[0], "loss": r[1], "lr": r[2], "n": 1} for r in rows], total
        width = 1
        for candidate in metric_buckets.BUCKET_WIDTHS:
            if high // candidate - low // candidate + 1 < SUMMARY_PER_BUCKET * buckets:
                break
            width = candidate
        summaries = step_summaries(conn, run_id) if width == 1 else conn.execute(
            "SELECT bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step FROM metric_buckets"
            " WHERE run_id = ? AND width = ?", (run_id, width))
        return points_from_summaries(summaries, low // width, high // width, buckets), total


def step_summaries(conn, run_id: int):
    """Width 1: one summary per step (a resumed run can hold a step twice)."""
    return conn.execute("SELECT step, COUNT(*), TOTAL(lr), COUNT(lr), MIN(loss), step, MAX(loss), step"
                        " FROM metrics WHERE run_id = ? GROUP BY step", (run_id,))


def points_from_summaries(summaries, first: int, last: int, buckets: int) -> list[dict]:
    """Group the summary buckets first..last (rows of bucket index + the 7 summary fields) into
    ``buckets`` contiguous chart buckets, evenly; the points of each, as loss_buckets returns them."""
    count = last - first + 1
    groups: dict = {}
    for row in summaries:
        metric_buckets.merge_stats(groups, (row[0] - first) * buckets // count, row[1:])
    points = []
    for _, (n, lr_sum, lr_n, low, low_step, high, high_step) in sorted(groups.items()):
        if low is None:  # no loss in this bucket (only NULLs)
            continue
        pair = [(low_step, low), (high_step, high)] if low_step <= high_step else [(high_step, high), (low_step, low)]
        if pair[0][0] == pair[1][0]:
            pair = pair[:1]
        lr = lr_sum / lr_n if lr_n else None
        points += [{"step": s, "loss": v, "lr": lr, "n": n / len(pair)} for s, v in pair]
    return points
