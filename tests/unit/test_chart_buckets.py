"""The loss chart's incremental buckets (store.buckets, kept by an insert trigger; read by
store.loss_buckets): what is kept as rows are appended equals what a full aggregation of every
metrics row gives (store.loss_summary.bucket_stats in Python, and the chart's definition straight from the rows),
for random series with NULL and NaN losses, missing lr, ties and a resumed run that appends steps
again; rows changed in place and databases from before the table are summarised again."""
from __future__ import annotations

import math
import random
import sqlite3
import sys
from pathlib import Path

import pytest


from webapp import store
from webapp.store.loss_summary import BUCKET_WIDTHS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_loss_chart import old_loss_buckets  # noqa: E402  the chart's old full aggregate: the oracle

BUCKETS = 50  # 100 points: small enough for a fast test, large enough for several widths


@pytest.fixture
def conn(tmp_path):
    conn = store.connect(tmp_path / "otweb.sqlite3")
    store.init_schema(conn)
    yield conn
    conn.close()


def series(rng: random.Random, steps: range, nulls: bool = True) -> list[tuple]:
    """(step, loss, lr, time) rows: a noisy decay, with spikes, NULL and NaN losses, missing lr and
    repeated values (ties)."""
    rows = []
    for step in steps:
        roll = rng.random()
        if nulls and roll < 0.02:
            loss = None
        elif nulls and roll < 0.03:
            loss = math.nan
        elif roll < 0.06:
            loss = 0.5  # ties across a bucket
        else:
            loss = math.exp(-step / 3000) + rng.random() * 0.2 + (4.0 if rng.random() < 0.002 else 0.0)
        lr = None if nulls and rng.random() < 0.02 else 1e-4 * (1 + math.cos(step / 500))
        rows.append((step, loss, lr, 1000.0 + step))
    return rows


def append_in_batches(conn, run_id: int, rows: list[tuple], rng: random.Random) -> None:
    """As the worker's bridge does: a few rows at a time, sometimes many."""
    index = 0
    while index < len(rows):
        size = rng.choice((1, 1, 2, 3, 7, 40, 500))
        store.append_metrics(conn, run_id, rows[index:index + size])
        index += size


def stored(conn, run_id: int) -> dict:
    return {(r["width"], r["bucket"]): [r["n"], r["lr_sum"], r["lr_n"], r["min_loss"], r["min_step"],
                                        r["max_loss"], r["max_step"]]
            for r in conn.execute("SELECT * FROM metric_buckets WHERE run_id = ?", (run_id,))}


def raw_rows(conn, run_id: int) -> list[tuple]:
    return [tuple(r) for r in conn.execute("SELECT step, loss, lr FROM metrics WHERE run_id = ?", (run_id,))]


def assert_same_summaries(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, want in expected.items():
        got = actual[key]
        assert got[0] == want[0] and got[2] == want[2], key
        assert got[1] == pytest.approx(want[1], rel=1e-9, abs=1e-18), key
        assert got[3:] == want[3:], key


def full_aggregation(rows: list[tuple], buckets: int) -> tuple[list[dict], int]:
    """The chart's definition, straight from every raw row (no summary table): the same width choice,
    the same even grouping of whole summary buckets, min and max loss rows (ties: the earliest step),
    mean lr, rows per point."""
    rows = [(s, None if loss is not None and loss != loss else loss, lr) for s, loss, lr in rows]
    if not rows:
        return [], 0
    if len(rows) <= 2 * buckets:
        return [{"step": s, "loss": v, "lr": lr, "n": 1} for s, v, lr in sorted(rows, key=lambda r: r[0])], len(rows)
    low, high = min(r[0] for r in rows), max(r[0] for r in rows)
    width = 1
    for candidate in BUCKET_WIDTHS:
        if high // candidate - low // candidate + 1 < store.SUMMARY_PER_BUCKET * buckets:
            break
        width = candidate
    first, count = low // width, high // width - low // width + 1
    groups: dict = {}
    for step, loss, lr in rows:
        group = groups.setdefault((step // width - first) * buckets // count, {"rows": [], "lrs": []})
        group["rows"].append((step, loss))
        if lr is not None:
            group["lrs"].append(lr)
    points = []
    for _, group in sorted(groups.items()):
        losses = [(s, v) for s, v in group["rows"] if v is not None]
        if not losses:
            continue
        low_row = min(losses, key=lambda r: (r[1], r[0]))
        high_row = min(losses, key=lambda r: (-r[1], r[0]))
        # in step order; one point when both are at one step (a resumed run's repeated step: the low one)
        pair = [low_row] if low_row[0] == high_row[0] else sorted([low_row, high_row])
        lr = sum(group["lrs"]) / len(group["lrs"]) if group["lrs"] else None
        points += [{"step": s, "loss": v, "lr": lr, "n": len(group["rows"]) / len(pair)} for s, v in pair]
    return points, len(rows)


def assert_same_points(actual: list[dict], expected: list[dict]) -> None:
    assert [(p["step"], p["loss"], p["n"]) for p in actual] == [(p["step"], p["loss"], p["n"]) for p in expected]
    for got, want in zip(actual, expected):
        assert (got["lr"] is None) == (want["lr"] is None)
        if want["lr"] is not None:
            assert got["lr"] == pytest.approx(want["lr"], rel=1e-9)


@pytest.mark.parametrize("seed, steps", [(1, 90), (2, 700), (3, 3_000), (4, 20_000), (5, 60_000)])
def test_incremental_buckets_equal_the_full_aggregation(conn, seed, steps):
    rng = random.Random(seed)
    run_id = store.create_run(conn, "r", {})
    other = store.create_run(conn, "other", {})  # another run's rows never mix in
    store.append_metrics(conn, other, series(random.Random(99), range(1, 5000)))
    append_in_batches(conn, run_id, series(rng, range(1, steps + 1)), rng)
    rows = raw_rows(conn, run_id)
    assert_same_summaries(stored(conn, run_id), store.loss_summary.bucket_stats(rows))
    for buckets in (BUCKETS, 300):
        points, total = store.loss_buckets(conn, run_id, buckets)
        expected, expected_total = full_aggregation(rows, buckets)
        assert total == expected_total == steps
        assert_same_points(points, expected)


def test_a_resumed_run_appends_steps_again(conn):
    """Resumed from its backup at step 2,400, the trainer reports steps 2,401.. a second time: both
    attempts count, as they did in the full aggregation."""
    rng = random.Random(7)
    run_id = store.create_run(conn, "r", {})
    append_in_batches(conn, run_id, series(rng, range(1, 3_001)), rng)
    before = store.loss_buckets(conn, run_id, BUCKETS)
    assert_same_points(before[0], full_aggregation(raw_rows(conn, run_id), BUCKETS)[0])
    append_in_batches(conn, run_id, series(rng, range(2_401, 9_001)), rng)
    rows = raw_rows(conn, run_id)
    assert len(rows) == 3_000 + 6_600
    assert_same_summaries(stored(conn, run_id), store.loss_summary.bucket_stats(rows))
    for buckets in (BUCKETS, 300):
        points, total = store.loss_buckets(conn, run_id, buckets)
        expected, expected_total = full_aggregation(rows, buckets)
        assert total == expected_total
        assert_same_points(points, expected)


def test_chart_keeps_its_resolution_and_its_extremes(conn):
    """As many buckets as asked for (so as many points as before), the run's lowest and highest loss
    among them, first and last steps covered, every row counted once."""
    rng = random.Random(11)
    run_id = store.create_run(conn, "r", {})
    rows = series(rng, range(1, 100_001), nulls=False)
    store.append_metrics(conn, run_id, rows)
    for buckets in (50, 300, 500):
        points, total = store.loss_buckets(conn, run_id, buckets)
        assert total == 100_000
        assert buckets < len(points) <= 2 * buckets
        losses = [p["loss"] for p in points]
        assert max(losses) == max(r[1] for r in rows) and min(losses) == min(r[1] for r in rows)
        assert points[0]["step"] <= 100_000 / buckets and points[-1]["step"] >= 100_000 - 100_000 / buckets
        assert sum(p["n"] for p in points) == pytest.approx(100_000)
        assert [p["step"] for p in points] == sorted(p["step"] for p in points)



@pytest.mark.parametrize("seed, steps, buckets", [(21, 100, 20), (22, 1_000, 100), (23, 4_000, 500), (24, 3_000, 300)])
def test_a_short_run_shows_exactly_what_the_old_aggregation_showed(conn, seed, steps, buckets):
    """Below SUMMARY_PER_BUCKET × 4 steps per bucket the chart is read per step and its buckets are the
    old ones (steps and buckets chosen so that the old float bucket width is exact)."""
    rng = random.Random(seed)
    run_id = store.create_run(conn, "r", {})
    store.append_metrics(conn, run_id, series(rng, range(1, steps + 1), nulls=False))
    assert steps < store.SUMMARY_PER_BUCKET * BUCKET_WIDTHS[0] * buckets
    assert_same_points(store.loss_buckets(conn, run_id, buckets)[0], old_loss_buckets(conn, run_id, buckets)[0])


def test_an_old_workspace_gets_its_summaries_when_opened(tmp_path):
    """A database from before metric_buckets: init_schema marks the runs it already holds, and each
    is summarised from its rows when its chart is first read (start-up stays fast)."""
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE metrics (run_id INTEGER NOT NULL, step INTEGER NOT NULL, loss REAL, lr REAL,"
                       " time REAL NOT NULL); CREATE INDEX metrics_run ON metrics(run_id, step);")
    rng = random.Random(5)
    for run_id in (1, 2):
        conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)",
                         [(run_id, *row) for row in series(rng, range(1, 5_001))])
    conn.commit()
    conn.close()
    conn = store.connect(path)
    store.init_schema(conn)
    assert {r[0] for r in conn.execute("SELECT run_id FROM metric_buckets_stale")} == {1, 2}
    store.append_metrics(conn, 2, series(rng, range(5_001, 5_101)))  # a worker appends meanwhile
    for run_id in (1, 2):
        rows = raw_rows(conn, run_id)
        assert_same_points(store.loss_buckets(conn, run_id, BUCKETS)[0], full_aggregation(rows, BUCKETS)[0])
        assert_same_summaries(stored(conn, run_id), store.loss_summary.bucket_stats(rows))
    assert conn.execute("SELECT COUNT(*) FROM metric_buckets_stale").fetchone()[0] == 0
    # opened again (another process, a restart): found done, nothing marked again
    store.init_schema(conn)
    assert conn.execute("SELECT COUNT(*) FROM metric_buckets_stale").fetchone()[0] == 0
    conn.close()


def test_rows_changed_in_place_are_summarised_again(conn):
    """An UPDATE or DELETE of metrics rows (not what the worker does, but a script may) marks the run,
    and its next chart is read from a summary rebuilt from its rows."""
    rng = random.Random(6)
    run_id = store.create_run(conn, "r", {})
    store.append_metrics(conn, run_id, series(rng, range(1, 20_001)))
    conn.execute("UPDATE metrics SET loss = 50 WHERE run_id = ? AND step = 12345", (run_id,))
    points, _ = store.loss_buckets(conn, run_id, BUCKETS)
    assert max(p["loss"] for p in points) == 50 and {p["step"] for p in points if p["loss"] == 50} == {12345}
    conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > 15000", (run_id,))
    rows = raw_rows(conn, run_id)
    points, total = store.loss_buckets(conn, run_id, BUCKETS)
    assert total == 15_000 and points[-1]["step"] <= 15_000
    assert_same_points(points, full_aggregation(rows, BUCKETS)[0])
    assert_same_summaries(stored(conn, run_id), store.loss_summary.bucket_stats(rows))


def test_deleting_a_run_deletes_its_summaries(conn):
    run_id = store.create_run(conn, "r", {})
    store.append_metrics(conn, run_id, series(random.Random(3), range(1, 2_000)))
    conn.execute("UPDATE runs SET state = 'completed' WHERE id = ?", (run_id,))
    assert store.delete_run_rows(conn, run_id)
    for table in ("metric_buckets", "metric_buckets_stale"):
        assert conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0] == 0
    assert store.loss_buckets(conn, run_id, BUCKETS) == ([], 0)


def test_appending_inside_a_callers_transaction(conn):
    """append_metrics joins a transaction already open, and a rollback drops rows and summaries alike."""
    run_id = store.create_run(conn, "r", {})
    conn.execute("BEGIN IMMEDIATE")
    store.append_metrics(conn, run_id, series(random.Random(4), range(1, 300)))
    assert conn.execute("SELECT COUNT(*) FROM metric_buckets").fetchone()[0] > 0
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT COUNT(*) FROM metric_buckets").fetchone()[0] == 0
    assert store.loss_buckets(conn, run_id, BUCKETS) == ([], 0)
