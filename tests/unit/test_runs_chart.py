"""The loss chart of a long run: 100,000 loss values from SQLite, downsampled in SQL, in under a
second of server time, with no more points than asked for (benchmarks/bench_loss_chart.py)."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_loss_chart import STEPS, fill  # noqa: E402

from webapp import store  # noqa: E402
from webapp.web.runs import charts as run_charts  # noqa: E402
from webapp.web.runs.charts import CHART_POINTS  # noqa: E402


def test_100k_loss_values_chart_in_under_a_second(app, client):
    conn = store.connect(app.config["DATABASE"])
    run_id = fill(conn, STEPS)
    started = time.perf_counter()
    svg = client.get(f"/runs/{run_id}/chart").text
    svg_s = time.perf_counter() - started
    started = time.perf_counter()
    data = client.get(f"/api/runs/{run_id}/loss?max_points=500").json
    json_s = time.perf_counter() - started
    print(f"100k loss values: SVG {svg_s * 1000:.0f} ms, JSON {json_s * 1000:.0f} ms")
    assert svg_s < 1.0 and json_s < 1.0
    for series in ("loss", "smooth", "lr"):
        points = re.search(rf'class="series {series}" points="([^"]*)"', svg).group(1).split()
        assert 2 < len(points) <= CHART_POINTS, series
    assert data["total"] == STEPS and len(data["points"]) <= 500
    # the spikes (every 9973rd step, +5) survive the downsampling
    assert max(p["loss"] for p in data["points"]) > 5
    bucket = STEPS / 250
    assert data["points"][0]["step"] <= bucket and data["points"][-1]["step"] >= STEPS - bucket
    conn.close()


def test_the_live_chart_is_redrawn_at_most_once_a_second(app):
    """The SSE stream's chart (run_charts.live_chart): redrawn when due, from the incremental buckets, and
    in between the same drawing (the stream sends it only when it changed)."""
    conn = store.connect(app.config["DATABASE"])
    run_id = fill(conn, 5_000)
    with app.test_request_context("/events"):
        first = run_charts.live_chart(run_id)
        assert 'class="series loss"' in first and "5000 steps" in first
        store.append_metrics(conn, run_id, [(5_000 + s, 0.5, 1e-5, time.time()) for s in range(1, 1_001)])
        assert run_charts.live_chart(run_id) is first  # not due yet
        cache = app.extensions["run_chart_cache"]
        cache[run_id] = (0.0, cache[run_id][1])  # a second later
        redrawn = run_charts.live_chart(run_id)
        assert redrawn != first and "6000 steps" in redrawn
    conn.close()


def test_the_page_chart_is_drawn_again_only_when_the_run_changed(app, client):
    from webapp.protocol import make_event
    conn = store.connect(app.config["DATABASE"])
    run_id = fill(conn, 2_000)
    first = client.get(f"/runs/{run_id}/chart").text
    cache = app.extensions["run_page_chart_cache"]
    drawn = cache[run_id]
    assert client.get(f"/runs/{run_id}/chart").text == first and cache[run_id] is drawn  # no redraw
    store.append_metrics(conn, run_id, [(2_000 + s, 0.5, 1e-5, time.time()) for s in range(1, 101)])
    assert "2100 steps" in client.get(f"/runs/{run_id}/chart").text  # new losses: drawn again
    drawn = cache[run_id]
    store.append_event(conn, run_id, make_event("log", run_id=run_id, text="backup written: backups/x", level="info"))
    client.get(f"/runs/{run_id}/chart")
    assert cache[run_id] is not drawn  # an event (a sample, a save) may add a marker: drawn again
    conn.close()
