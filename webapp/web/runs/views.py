"""A run as people see it: its state made true (a running run whose worker is gone is
interrupted), what it may do next, its summary for lists, its config as it ran, its log's tail."""
from __future__ import annotations

import json
import time

import redis

from webapp import store
from webapp.protocol import RunState
from webapp.control import heartbeats, record_state
from webapp.settings import CONFIG_NAME, HEARTBEAT_TTL_S
from webapp.web.charts import loss_sparkline
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db, get_redis
from webapp.web.runs.charts import by_chart_version
from webapp.web.runs.files import run_dir
from webapp.control.placement import why_waiting
from webapp.web.fleet.workers import live_workers, run_usage

RESUMABLE_STATES = (RunState.FAILED.value, RunState.STOPPED.value, RunState.INTERRUPTED.value)


def run_view(run: dict | None) -> dict | None:
    """The run as a person should see it: a running run whose worker's heartbeat is gone while
    Redis answers is interrupted; while Redis does not answer, it is shown running and
    "reconnecting" (its trainer goes on: the worker keeps it while Redis is away)."""
    if run is None:
        return None
    view = dict(run)
    view.pop("config_json", None)
    state = run["state"]
    view["reconnecting"] = False
    if state == RunState.RUNNING.value:
        alive, beat = heartbeats.run_beat(get_redis(), run["worker"])
        if alive is False:
            state = RunState.INTERRUPTED.value
            view["reason"] = (f"lost contact with its worker {run['worker']} (no heartbeat for "
                              f"{HEARTBEAT_TTL_S} s)")
        elif alive is None:
            view["reconnecting"] = True
            view["status_text"] = "reconnecting: its worker's heartbeat cannot be read yet; the run goes on"
        elif beat and beat.get("run_id") == run["id"] and beat.get("catching_up"):
            # the trainer has said more than the record holds yet (a slow link): it follows
            view["status_text"] = f"catching up: {beat['catching_up']} entries to send"
    view["state"] = state
    running = state == RunState.RUNNING.value
    view["can"] = {"start": not running, "stop": running and not run["stop_requested"],
                   "save": running, "backup": running, "sample": running,
                   "resume": state in RESUMABLE_STATES}
    return view


def current_run() -> dict | None:
    return run_view(store.latest_run(get_db()))


def config_as_run(run: dict) -> dict:
    """The config the trainer got (run folder), else the one queued."""
    path = run_dir(run["id"]) / CONFIG_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return store.run_config(run)


def get_run_view(run_id: int) -> dict:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    view = summarize(run)
    view["record_blocked"] = record_blocked(view)
    view["files_owed"] = files_owed(view)
    return view


def files_owed(view: dict) -> str | None:
    """Files of an ended run still on its worker, being sent (its last files found no room in the
    event stream, or its worker restarted before they were sent): the worker's heartbeat says."""
    if not view.get("worker") or view["state"] in (RunState.QUEUED.value, RunState.RUNNING.value):
        return None
    alive, beat = heartbeats.run_beat(get_redis(), view["worker"])
    owed = [o for o in (beat or {}).get("owed") or () if isinstance(o, dict) and o.get("run_id") == view["id"]]
    if not alive or not owed:
        return None
    files, size = int(owed[0].get("files") or 0), float(owed[0].get("bytes") or 0)
    return (f"{files} file{'s' if files != 1 else ''} ({size / 1e6:.0f} MB) still on worker {view['worker']}, "
            "being sent") if files else None


def record_blocked(view: dict) -> str | None:
    """Why what this run's worker sends is not recorded now (the web host's disk is full), for
    a run the recorder holds entries of, or any running run (the recorder reads nothing new)."""
    try:
        blocked = record_state.blocked(get_redis())
    except redis.RedisError:
        return None
    if blocked and (view["id"] in blocked.get("runs", ()) or view["state"] == RunState.RUNNING.value):
        return blocked["reason"]
    return None


def summarize(run: dict) -> dict:
    """A stored run as people see it (run_view), plus what the history and the API show:
    model type, method, duration, steps, final loss, who started it."""
    view = run_view(run)
    config = json.loads(run["config_json"]) if run.get("config_json") else {}
    progress = view.get("progress") or {}
    end = view.get("finished_at") or (time.time() if view["state"] == RunState.RUNNING.value else None)
    add_gpus(view, config)
    view.update(model_type=run.get("model_type") or config.get("model_type"),
                training_method=run.get("training_method") or config.get("training_method"),
                duration_s=(end - view["started_at"]) if end and view.get("started_at") else None,
                steps=progress.get("global_step"), max_step=progress.get("max_step"),
                final_loss=progress.get("smooth_loss", progress.get("loss")),
                started_by=view.get("started_by") or "local")
    view.pop("config_json", None)
    return view


def add_gpus(view: dict, config: dict, workers: list[dict] | None = None) -> dict:
    """The run's GPUs, its global batch (batch_size is per GPU), per-rank usage while it runs,
    and why it waits when no worker has enough GPUs."""
    gpus = int(view.get("gpus") or 1)
    batch = config.get("batch_size") if isinstance(config.get("batch_size"), int) else None
    view["gpus"] = gpus
    view["device_indexes"] = config.get("device_indexes") if gpus > 1 else None
    view["global_batch"] = batch * gpus if batch else None
    if view["state"] in (RunState.QUEUED.value, RunState.RUNNING.value):
        workers = live_workers() if workers is None else workers
        view["waiting_reason"] = (_why_waiting(view, gpus, workers)
                                  if view["state"] == RunState.QUEUED.value else None)
        view["ranks"] = run_usage(view["id"], workers) if view["state"] == RunState.RUNNING.value else []
    return view


def _why_waiting(view: dict, gpus: int, workers: list[dict]) -> str | None:
    """The dispatcher's own reason (control/placement.py), from the same heartbeats."""
    beats = {worker["name"]: worker["beat"] for worker in workers}
    busy = {worker["name"] for worker in workers if worker["run_id"]}
    return why_waiting({**store.assignments.target_of(view), "gpus": gpus}, beats, busy)


SPARK_POINTS = 24
SPARK_CACHE_RUNS = 2000  # sparklines kept per process (a few hundred bytes each)


def list_glance(conn, run_ids: list[int]) -> dict[int, dict]:
    """Per run of the runs list: a loss sparkline (the whole run, from the chart's summary: a few
    rows per run at any length) and its newest sample, in one query for all the samples."""
    newest = store.samples.newest_per_run(conn, run_ids)
    glance = {}
    for run_id in run_ids:
        # kept while the run's loss is unchanged: merging its summary rows cost ~1 ms a run
        glance[run_id] = {"spark": by_chart_version("run_list_spark_cache", run_id, _sparkline, SPARK_CACHE_RUNS),
                          "sample_id": newest.get(run_id)}
    return glance


def _sparkline(run_id: int) -> str:
    points, _ = store.loss_buckets(get_db(), run_id, SPARK_POINTS // 2)
    return loss_sparkline([p["loss"] for p in points if p["loss"] is not None], 96, 24)
