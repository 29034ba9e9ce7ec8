"""Metrics: every loss and learning-rate value, and the downsampled loss curve a chart draws."""
from __future__ import annotations

from .loss_summary import BUCKET_WIDTHS, merge_stats, refresh_buckets
from .db import transaction


def append_metrics(conn, run_id: int, rows: list[tuple], attempt: int = 1) -> None:
    """rows: (step, loss, lr, time) of the run's ``attempt`` (1, or the nth assignment of a resumed
    run). A trigger adds them to the run's metric_buckets, in the same transaction. A resumed
    attempt redoes the steps after its backup: an earlier attempt's rows from its first step on are
    kept but superseded (the chart shows the attempt that continued; it drew two rows per step)."""
    if not rows:
        return
    with transaction(conn):
        if attempt > 1:
            first = min(row[0] for row in rows)
            redone = conn.execute("UPDATE metrics SET superseded = 1 WHERE run_id = ? AND step >= ? AND attempt < ?"
                                  " AND superseded = 0", (run_id, first, attempt)).rowcount
            if redone:  # the summary is rebuilt from the rows still shown when next read
                conn.execute("INSERT OR IGNORE INTO metric_buckets_stale (run_id) VALUES (?)", (run_id,))
        conn.executemany("INSERT INTO metrics (run_id, step, loss, lr, time, attempt) VALUES (?, ?, ?, ?, ?, ?)",
                         [(run_id, *row, attempt) for row in rows])


def recent_losses(conn, run_id: int, limit: int = 300) -> list[float]:
    """The last ``limit`` loss values in step order (uses the (run_id, step) index, no full scan)."""
    rows = conn.execute("SELECT loss FROM metrics WHERE run_id = ? AND loss IS NOT NULL AND superseded = 0"
                        " ORDER BY step DESC LIMIT ?", (run_id, limit)).fetchall()
    return [row[0] for row in reversed(rows)]



# -- loss, downsampled: min and max per bucket, so spikes survive --------------------------------

# a chart bucket spans at least this many stored summary buckets (BUCKET_WIDTHS), so chart
# buckets differ in width by at most a quarter (the summary buckets are whole)
SUMMARY_PER_BUCKET = 4


def loss_buckets(conn, run_id: int, buckets: int) -> tuple[list[dict], int]:
    """(points, total rows). Fewer rows than 2 × buckets: every row. Else the steps are cut into
    ``buckets`` contiguous buckets; per bucket, the row with the lowest and the one with the highest
    loss (ties: the earliest), with the bucket's mean lr; at most 2 × buckets points, in step order.

    Read from the run's summary (store.buckets, kept as rows are appended) at the coarsest
    width that still gives SUMMARY_PER_BUCKET summary buckets per chart bucket: O(points) rows,
    whatever the run's length. A short run (< SUMMARY_PER_BUCKET × buckets × 4 steps) is read per step."""
    refresh_buckets(conn, run_id)  # only if its rows were changed or deleted since
    with transaction(conn, "DEFERRED"):  # one snapshot: the worker may be appending
        low = conn.execute("SELECT MIN(step) FROM metrics WHERE run_id = ? AND superseded = 0", (run_id,)).fetchone()[0]
        if low is None:
            return [], 0
        high = conn.execute("SELECT MAX(step) FROM metrics WHERE run_id = ? AND superseded = 0", (run_id,)).fetchone()[0]
        total = int(conn.execute("SELECT TOTAL(n) FROM metric_buckets WHERE run_id = ? AND width = ?",
                                 (run_id, BUCKET_WIDTHS[-1])).fetchone()[0])
        if total <= 2 * buckets:
            rows = conn.execute("SELECT step, loss, lr FROM metrics WHERE run_id = ? AND superseded = 0 ORDER BY step",
                                (run_id,))
            return [{"step": r[0], "loss": r[1], "lr": r[2], "n": 1} for r in rows], total
        width = 1
        for candidate in BUCKET_WIDTHS:
            if high // candidate - low // candidate + 1 < SUMMARY_PER_BUCKET * buckets:
                break
            width = candidate
        summaries = step_summaries(conn, run_id) if width == 1 else conn.execute(
            "SELECT bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step FROM metric_buckets"
            " WHERE run_id = ? AND width = ?", (run_id, width))
        return points_from_summaries(summaries, low // width, high // width, buckets), total


def step_summaries(conn, run_id: int):
    """Width 1: one summary per step (rows a resumed attempt redid are left out)."""
    return conn.execute("SELECT step, COUNT(*), TOTAL(lr), COUNT(lr), MIN(loss), step, MAX(loss), step"
                        " FROM metrics WHERE run_id = ? AND superseded = 0 GROUP BY step", (run_id,))


def points_from_summaries(summaries, first: int, last: int, buckets: int) -> list[dict]:
    """Group the summary buckets first..last (rows of bucket index + the 7 summary fields) into
    ``buckets`` contiguous chart buckets, evenly; the points of each, as loss_buckets returns them."""
    count = last - first + 1
    groups: dict = {}
    for row in summaries:
        merge_stats(groups, (row[0] - first) * buckets // count, row[1:])
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
