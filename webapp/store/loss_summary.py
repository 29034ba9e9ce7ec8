"""Each run's loss summarised at fixed step widths as its rows are appended (by a trigger,
whoever inserts), so that a chart reads O(points) summary rows instead of aggregating O(steps)
metrics rows (metrics.loss_buckets). Part of the record's schema (schema.init_schema)."""
from __future__ import annotations

from .db import setting, transaction


BUCKET_WIDTHS = tuple(4 ** k for k in range(1, 9))  # 4, 16, ..., 65,536 steps; bucket = step // width
# a new version (other widths, another rule) renames the triggers and re-summarises every run
BUCKETS_KEY, BUCKETS_VERSION = "metric_buckets_version", "1"
# one bucket's summary: rows, sum and count of the non-null lr, the lowest loss and its step, the
# highest loss and its step (ties: the earliest step); the losses are None when every loss was NULL
STAT_N, STAT_LR_SUM, STAT_LR_N, STAT_MIN, STAT_MIN_STEP, STAT_MAX, STAT_MAX_STEP = range(7)

_NEW_MIN = ("excluded.min_loss IS NOT NULL AND (min_loss IS NULL OR excluded.min_loss < min_loss"
            " OR (excluded.min_loss = min_loss AND excluded.min_step < min_step))")
_NEW_MAX = ("excluded.max_loss IS NOT NULL AND (max_loss IS NULL OR excluded.max_loss > max_loss"
            " OR (excluded.max_loss = max_loss AND excluded.max_step < max_step))")
_MERGE_BUCKET = (  # merge_stats's rule, in SQL
    " ON CONFLICT (run_id, width, bucket) DO UPDATE SET"
    " n = n + excluded.n, lr_sum = lr_sum + excluded.lr_sum, lr_n = lr_n + excluded.lr_n,"
    f" min_loss = CASE WHEN {_NEW_MIN} THEN excluded.min_loss ELSE min_loss END,"
    f" min_step = CASE WHEN {_NEW_MIN} THEN excluded.min_step ELSE min_step END,"
    f" max_loss = CASE WHEN {_NEW_MAX} THEN excluded.max_loss ELSE max_loss END,"
    f" max_step = CASE WHEN {_NEW_MAX} THEN excluded.max_step ELSE max_step END")
_BUCKET_COLUMNS = "run_id, width, bucket, n, lr_sum, lr_n, min_loss, min_step, max_loss, max_step"
_LOSS_STEP = "CASE WHEN NEW.loss IS NULL THEN NULL ELSE NEW.step END"
_INSERT_ROW = "".join(  # one upsert per width
    f"    INSERT INTO metric_buckets ({_BUCKET_COLUMNS}) VALUES (NEW.run_id, {width},"
    f" CAST(NEW.step AS INTEGER) / {width}, 1, COALESCE(NEW.lr, 0.0), NEW.lr IS NOT NULL,"
    f" NEW.loss, {_LOSS_STEP}, NEW.loss, {_LOSS_STEP}){_MERGE_BUCKET};\n"
    for width in BUCKET_WIDTHS)
BUCKETS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS metric_buckets (
    run_id INTEGER NOT NULL,
    width INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    lr_sum REAL NOT NULL,
    lr_n INTEGER NOT NULL,
    min_loss REAL,
    min_step INTEGER,
    max_loss REAL,
    max_step INTEGER,
    PRIMARY KEY (run_id, width, bucket)
) WITHOUT ROWID;
-- runs whose summary must be rebuilt from their rows before it is read (rows changed or deleted)
CREATE TABLE IF NOT EXISTS metric_buckets_stale (run_id INTEGER PRIMARY KEY);
CREATE TRIGGER IF NOT EXISTS metrics_insert_buckets_v{BUCKETS_VERSION} AFTER INSERT ON metrics BEGIN
{_INSERT_ROW}END;
CREATE TRIGGER IF NOT EXISTS metrics_update_buckets_v{BUCKETS_VERSION} AFTER UPDATE OF run_id, step, loss, lr ON metrics
BEGIN
    INSERT OR IGNORE INTO metric_buckets_stale (run_id) VALUES (OLD.run_id), (NEW.run_id);
END;
CREATE TRIGGER IF NOT EXISTS metrics_delete_buckets_v{BUCKETS_VERSION} AFTER DELETE ON metrics BEGIN
    INSERT OR IGNORE INTO metric_buckets_stale (run_id) VALUES (OLD.run_id);
END;
"""


def mark_all_buckets_stale(conn) -> None:
    """A workspace from before metric_buckets (or another BUCKETS_VERSION): every run with metrics
    is summarised again when its chart is first read. Cheap here, so start-up stays fast."""
    with transaction(conn):  # IMMEDIATE: the web and the worker may start together
        if setting(conn, BUCKETS_KEY) == BUCKETS_VERSION:
            return
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                    " AND name LIKE 'metrics_%_buckets_v%'").fetchall():
            if not name.endswith(f"_v{BUCKETS_VERSION}"):  # another version's: it would count twice
                conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("DELETE FROM metric_buckets")
        conn.execute("INSERT OR IGNORE INTO metric_buckets_stale (run_id) SELECT DISTINCT run_id FROM metrics")
        conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                     " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (BUCKETS_KEY, BUCKETS_VERSION))


def refresh_buckets(conn, run_id: int) -> None:
    """Rebuild the run's summary from its rows if it is marked stale (a no-op, one lookup, if not)."""
    if conn.execute("SELECT 1 FROM metric_buckets_stale WHERE run_id = ?", (run_id,)).fetchone() is None:
        return
    with transaction(conn):
        if conn.execute("SELECT 1 FROM metric_buckets_stale WHERE run_id = ?", (run_id,)).fetchone() is None:
            return  # another process rebuilt it meanwhile
        conn.execute("DELETE FROM metric_buckets WHERE run_id = ?", (run_id,))
        rows = conn.execute("SELECT step, loss, lr FROM metrics WHERE run_id = ? AND superseded = 0", (run_id,))
        conn.executemany(f"INSERT INTO metric_buckets ({_BUCKET_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(run_id, width, bucket, *summary) for (width, bucket), summary in bucket_stats(rows).items()])
        conn.execute("DELETE FROM metric_buckets_stale WHERE run_id = ?", (run_id,))


def merge_stats(into: dict, key, stats) -> None:
    """Fold one summary (the 7 fields above) into ``into[key]``: the rule of the insert trigger."""
    current = into.get(key)
    if current is None:
        into[key] = list(stats)
        return
    current[STAT_N] += stats[STAT_N]
    current[STAT_LR_SUM] += stats[STAT_LR_SUM]
    current[STAT_LR_N] += stats[STAT_LR_N]
    low, low_step, high, high_step = stats[STAT_MIN], stats[STAT_MIN_STEP], stats[STAT_MAX], stats[STAT_MAX_STEP]
    if low is not None and (current[STAT_MIN] is None or low < current[STAT_MIN]
                            or (low == current[STAT_MIN] and low_step < current[STAT_MIN_STEP])):
        current[STAT_MIN], current[STAT_MIN_STEP] = low, low_step
    if high is not None and (current[STAT_MAX] is None or high > current[STAT_MAX]
                             or (high == current[STAT_MAX] and high_step < current[STAT_MAX_STEP])):
        current[STAT_MAX], current[STAT_MAX_STEP] = high, high_step


def row_stats(step: int, loss, lr) -> tuple:
    """One metrics row as a summary. NaN is NULL, as SQLite stores it."""
    if loss is not None and loss != loss:
        loss = None
    has_lr = lr is not None and lr == lr
    return (1, float(lr) if has_lr else 0.0, int(has_lr), loss, step if loss is not None else None,
            loss, step if loss is not None else None)


def bucket_stats(rows) -> dict:
    """{(width, bucket): summary} at every width of BUCKET_WIDTHS, for rows of (step, loss, lr):
    what the insert trigger keeps, computed in one pass (each width folded from the one below)."""
    finest = BUCKET_WIDTHS[0]
    level: dict = {}
    for step, loss, lr in rows:
        step = int(step)
        merge_stats(level, (finest, step // finest), row_stats(step, loss, lr))
    stats = dict(level)
    for width, finer in zip(BUCKET_WIDTHS[1:], BUCKET_WIDTHS):
        coarser: dict = {}
        for (_, bucket), summary in level.items():
            merge_stats(coarser, (width, bucket // (width // finer)), summary)
        stats.update(coarser)
        level = coarser
    return stats
