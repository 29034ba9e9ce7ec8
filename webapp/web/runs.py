"""Runs: the history page, a run's page (config, timeline, chart, samples, log, files) and the
actions on runs and the queue. The JSON side is runs_api.py; both call the functions here."""
from __future__ import annotations

import json
import shutil
import time

from flask import Blueprint, current_app, render_template, request, url_for

from .. import runs_store, store
from ..config.library import ConfigLibrary
from ..extensions import get_db
from ..trainer.protocol import Command, Event, RunState, make_event
from . import training
from .charts import chart_geometry, loss_series
from .downloads import run_dir, run_files
from .errors import ApiError

bp = Blueprint("runs", __name__)
CHART_POINTS = 600
LOG_TAIL_BYTES = 256 * 1024
LOG_LINES = 400
CHART_BUDGET = 20  # redraw cost at most 5 % of the time
CHART_RERENDER_S = 1.0


@bp.app_template_filter("datetime")
def datetime_filter(timestamp) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp or 0))


@bp.app_template_filter("filesize")
def filesize_filter(size) -> str:
    if size is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


# -- shared by the pages and the JSON API --------------------------------------------------

def enqueue(items: list[dict]) -> list[int]:
    """items: [{config_name | config, overrides}]; every one checked before any is queued."""
    prepared = []
    for item in items:
        name, config = training.resolve_config(item.get("config_name"), item.get("config"))
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ApiError(400, "invalid field", [{"field": "overrides", "message": "must be a JSON object"}])
        config = {**config, **overrides}
        training.check_config(config)
        prepared.append((name, config))
    ids = [training.queue_run(name, config) for name, config in prepared]
    training.nudge_workers()
    return ids


def cancel(run_id: int) -> None:
    conn = get_db()
    if store.get_run(conn, run_id) is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if not runs_store.cancel_queued(conn, run_id):
        raise ApiError(409, "run is not queued", f"run {run_id} has left the queue already; stop it instead")
    training.sink().emit(run_id, make_event(Event.RUN, state=RunState.CANCELED.value, reason="canceled in the queue"))


def delete(run_id: int) -> None:
    run = get_run_view(run_id)
    if RunState(run["state"]).is_active:
        raise ApiError(409, "run is active", f"run {run_id} is {run['state']}: stop or cancel it first")
    if not runs_store.delete_run_rows(get_db(), run_id):
        raise ApiError(409, "run is active", f"run {run_id} changed state meanwhile")
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def clone_config(run_id: int) -> str:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    library = ConfigLibrary(current_app.config["CONFIG_DIR"])
    name = library.free_name(f"{run['config_name'].rsplit('/', 1)[-1]} from run {run_id}")
    library.save(name, config_as_run(run), create=True)
    return name


def config_as_run(run: dict) -> dict:
    """The config the trainer got (run folder), else the one queued."""
    path = run_dir(run["id"]) / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return store.run_config(run)


def get_run_view(run_id: int) -> dict:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    return summarize(run)


def summarize(run: dict) -> dict:
    """A stored run as people see it (training.run_view), plus what the history and the API show:
    model type, method, duration, steps, final loss, who started it."""
    view = training.run_view(run)
    config = json.loads(run["config_json"]) if run.get("config_json") else {}
    progress = view.get("progress") or {}
    end = view.get("finished_at") or (time.time() if view["state"] == RunState.RUNNING.value else None)
    view.update(model_type=run.get("model_type") or config.get("model_type"),
                training_method=run.get("training_method") or config.get("training_method"),
                duration_s=(end - view["started_at"]) if end and view.get("started_at") else None,
                steps=progress.get("global_step"), max_step=progress.get("max_step"),
                final_loss=progress.get("smooth_loss", progress.get("loss")),
                started_by=view.get("started_by") or "local")
    view.pop("config_json", None)
    return view


def markers(run_id: int, output_path: str | None = None) -> list[dict]:
    found = [{"kind": "sample", "step": s["global_step"], "label": s["prompt"]}
             for s in store.list_samples(get_db(), run_id, limit=2000) if s["global_step"] is not None]
    found += [{"kind": f["kind"], "step": f["step"], "label": f["name"]}
              for f in run_files(run_dir(run_id), output_path) if f["step"] is not None]
    return sorted(found, key=lambda m: m["step"])


def render_chart(run_id: int) -> str:
    run = store.get_run(get_db(), run_id)
    series = loss_series(get_db(), run_id, CHART_POINTS)
    chart = chart_geometry(series["points"], markers(run_id, run["output_path"] if run else None))
    return render_template("runs/_chart.html", chart=chart, total=series["total"], run_id=run_id)


CHART_CACHE_RUNS = 32  # charts kept per process


def cached_chart(run_id: int) -> str:
    """The run's chart, drawn again only when what it shows changed (store.chart_version): a
    finished run's chart never changes, and at 100 page views a second drawing each one (~5 ms)
    saturated the process (run page p99 408 ms in benchmarks/bench_pages.py)."""
    cache = current_app.extensions.setdefault("run_page_chart_cache", {})
    version = store.chart_version(get_db(), run_id)
    hit = cache.get(run_id)
    if hit is not None and hit[0] == version:
        return hit[1]
    html = render_chart(run_id)
    if len(cache) >= CHART_CACHE_RUNS and run_id not in cache:
        cache.pop(next(iter(cache)))  # the oldest drawn
    cache[run_id] = (version, html)
    return html


def live_chart(run_id: int) -> str:
    """For the SSE stream: at most one render a second per run and process (and less often if a
    render ever took more than 1/CHART_BUDGET of that: a gevent process serves every stream on one
    thread). A render reads O(points) summary rows (runs_store.loss_buckets): a few milliseconds at
    any run length, where aggregating every metrics row took ~100-400 ms at 100,000 steps."""
    cache = current_app.extensions.setdefault("run_chart_cache", {})
    due, html = cache.get(run_id, (0.0, ""))
    now = time.monotonic()
    if now >= due:
        html = cached_chart(run_id)
        took = time.monotonic() - now
        cache[run_id] = (now + max(CHART_RERENDER_S, took * CHART_BUDGET), html)
    return html


def log_lines(run_id: int, query: str = "") -> list[str]:
    """The tail of the trainer's stdout/stderr, optionally only the lines containing query."""
    from ..trainer.process import LOG_NAME  # a constant: importing it loads no torch
    path = run_dir(run_id) / LOG_NAME
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    if size > LOG_TAIL_BYTES:
        lines = lines[1:]  # the first is cut
    if query:
        lines = [line for line in lines if query.lower() in line.lower()]
    return lines[-LOG_LINES:]


def queue_panel(message: str | None = None, status: int = 200):
    conn = get_db()
    return render_template("runs/_queue.html", queue=runs_store.queued_runs(conn),
                           paused=runs_store.queue_paused(conn), message=message,
                           recent=[summarize(r) for r in runs_store.recent_finished(conn)]), status


# -- pages ------------------------------------------------------------------------------------

@bp.get("/runs")
def history():
    filters = {key: request.args.get(key, "").strip() for key in runs_store.HISTORY_FILTERS}
    conn = get_db()
    runs = [summarize(r) for r in runs_store.history(conn, filters, limit=200)]
    return render_template("runs/index.html", runs=runs, filters=filters, choices=runs_store.distinct_values(conn))


@bp.get("/runs/<int:run_id>")
def page(run_id: int):
    run = get_run_view(run_id)
    conn = get_db()
    return render_template(
        "runs/run.html", run=run, last_seq=store.last_seq(conn),
        config_text=json.dumps(config_as_run(store.get_run(conn, run_id)), indent=2),
        timeline=runs_store.timeline(conn, run_id), samples=store.list_samples(conn, run_id, limit=60),
        chart_html=cached_chart(run_id), log=log_lines(run_id), query="",
        files=run_files(run_dir(run_id), run["output_path"]))


@bp.get("/runs/<int:run_id>/status")
def status(run_id: int):
    conn = get_db()
    return render_template("runs/_status.html", run=get_run_view(run_id), timeline=runs_store.timeline(conn, run_id))


@bp.get("/runs/<int:run_id>/chart")
def chart(run_id: int):
    get_run_view(run_id)
    return cached_chart(run_id)


@bp.get("/runs/<int:run_id>/log")
def log(run_id: int):
    get_run_view(run_id)
    query = request.args.get("q", "").strip()
    return render_template("runs/_log.html", log=log_lines(run_id, query), query=query)


@bp.get("/runs/<int:run_id>/files")
def files(run_id: int):
    run = get_run_view(run_id)
    return render_template("runs/_files.html", run=run, files=run_files(run_dir(run_id), run["output_path"]))


@bp.get("/queue/panel")
def panel():
    return queue_panel()


# -- actions (POST; answered with a flash, or a redirect for htmx) -------------------------

def flash(message: str, status: int = 200):
    return render_template("_flash.html", message=message, level="info" if status < 400 else "error"), status


@bp.post("/runs/<int:run_id>/stop")
def stop(run_id: int):
    training.send_command(Command.STOP, run_id)
    return flash(f"Stop sent to run #{run_id}.")


@bp.post("/runs/<int:run_id>/clone")
def clone(run_id: int):
    name = clone_config(run_id)
    return "", 204, {"HX-Redirect": url_for("configs.edit", name=name)}


@bp.post("/runs/<int:run_id>/delete")
def delete_page(run_id: int):
    if request.form.get("confirm") != str(run_id):
        raise ApiError(400, "not confirmed", f"type the run number ({run_id}) to delete it and its files")
    delete(run_id)
    return "", 204, {"HX-Redirect": url_for("runs.history")}


@bp.post("/queue/add")
def queue_add():
    count = request.form.get("count", "1")
    if not count.isdigit() or not 1 <= int(count) <= 20:
        raise ApiError(400, "invalid field", [{"field": "count", "message": "must be between 1 and 20"}])
    ids = enqueue([{"config_name": request.form.get("config_name")}] * int(count))
    return queue_panel(f"Queued run{'s' if len(ids) > 1 else ''} " + ", ".join(f"#{i}" for i in ids) + ".")


@bp.post("/queue/<int:run_id>/move/<direction>")
def queue_move(run_id: int, direction: str):
    offset = {"up": -1, "down": 1, "top": -10**6}.get(direction)
    if offset is None:
        raise ApiError(404, "unknown direction", "up, down or top")
    runs_store.move_in_queue(get_db(), run_id, offset)
    return queue_panel()


@bp.post("/queue/<int:run_id>/cancel")
def queue_cancel(run_id: int):
    cancel(run_id)
    return queue_panel(f"Run #{run_id} canceled.")


@bp.post("/queue/pause")
def queue_pause():
    runs_store.set_queue_paused(get_db(), request.form.get("paused", "1") == "1")
    training.nudge_workers()
    return queue_panel()
