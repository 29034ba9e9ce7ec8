"""The loss chart of a long run: 100,000 loss values from SQLite, downsampled in SQL, in under a
second of server time, with no more points than asked for (benchmarks/bench_loss_chart.py)."""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_loss_chart import STEPS, fill  # noqa: E402

from webapp import store  # noqa: E402
from webapp.web.runs import CHART_POINTS  # noqa: E402


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
