"""The run page's loss chart: drawn from the downsampled curve with sample, backup and save
markers, cached per run until what it shows changes, and re-drawn at most every CHART_RERENDER_S live."""
from __future__ import annotations

import time

from flask import current_app, render_template

from webapp import store
from webapp.web.charts import NARROW, NARROW_POINTS, chart_geometry, loss_series
from webapp.web.extensions import get_db
from webapp.web.runs.files import run_dir, run_files

CHART_POINTS = 600
CHART_BUDGET = 20  # redraw cost at most 5 % of the time
# live, the chart is redrawn every 5 s: each redraw went to every viewer (~20 kB each), a third of
# the web's CPU per minute of training when it was once a second (benchmarks/bench_fleet_cpu.py);
# progress, the loss and its sparkline still move every second
CHART_RERENDER_S = 5.0


def markers(run_id: int, output_path: str | None = None) -> list[dict]:
    found = [{"kind": "sample", "step": s["global_step"], "label": s["prompt"]}
             for s in store.list_samples(get_db(), run_id, limit=2000) if s["global_step"] is not None]
    found += [{"kind": f["kind"], "step": f["step"], "label": f["name"]}
              for f in run_files(run_dir(run_id), output_path) if f["step"] is not None]
    return sorted(found, key=lambda m: m["step"])


def render_chart(run_id: int) -> str:
    """The wide drawing and a phone's (charts.NARROW); the page's CSS shows one of them."""
    run = store.get_run(get_db(), run_id)
    found = markers(run_id, run["output_path"] if run else None)
    series = loss_series(get_db(), run_id, CHART_POINTS)
    axes = fixed_axes(run)
    chart = chart_geometry(series["points"], found, *axes)
    narrow = (chart_geometry(loss_series(get_db(), run_id, NARROW_POINTS)["points"], found, *axes, layout=NARROW)
              if chart else None)
    return render_template("runs/_chart.html", chart=chart, narrow=narrow, total=series["total"], run_id=run_id)


def fixed_axes(run: dict | None) -> tuple[int | None, float | None]:
    """(total steps, configured learning rate): what fixes the chart's x and LR axes from its first point."""
    if run is None:
        return None, None
    progress = run.get("progress") or {}
    rate = store.run_config(run).get("learning_rate")
    return progress.get("max_step"), rate if isinstance(rate, (int, float)) and rate > 0 else None


CHART_CACHE_RUNS = 32  # charts kept per process


def cached_chart(run_id: int) -> str:
    """The run's chart, drawn again only when what it shows changed (store.chart_version): a
    finished run's chart never changes, and at 100 page views a second drawing each one (~5 ms)
    saturated the process (run page p99 408 ms in benchmarks/bench_pages.py)."""
    return by_chart_version("run_page_chart_cache", run_id, render_chart, CHART_CACHE_RUNS)


def by_chart_version(name: str, run_id: int, draw, keep: int):
    """``draw(run_id)``, kept per process in the cache ``name`` (``keep`` runs) while the run's
    store.chart_version is the same: three index lookups instead of a drawing."""
    cache = current_app.extensions.setdefault(name, {})
    version = store.chart_version(get_db(), run_id)
    hit = cache.get(run_id)
    if hit is not None and hit[0] == version:
        return hit[1]
    drawn = draw(run_id)
    if len(cache) >= keep and run_id not in cache:
        cache.pop(next(iter(cache)))  # the oldest drawn
    cache[run_id] = (version, drawn)
    return drawn


def live_chart(run_id: int) -> str:
    """For the SSE stream: at most one render per CHART_RERENDER_S per run and process (and less often if a
    render ever took more than 1/CHART_BUDGET of that: a gevent process serves every stream on one
    thread). A render reads O(points) summary rows (store.loss_buckets): a few milliseconds at
    any run length, where aggregating every metrics row took ~100-400 ms at 100,000 steps."""
    cache = current_app.extensions.setdefault("run_chart_cache", {})
    due, html = cache.get(run_id, (0.0, ""))
    now = time.monotonic()
    if now >= due:
        html = cached_chart(run_id)
        took = time.monotonic() - now
        cache[run_id] = (now + max(CHART_RERENDER_S, took * CHART_BUDGET), html)
    return html
