"""What the pages and the JSON API do to runs: start, queue, resume, command, cancel, delete.

The web never talks to a trainer directly: it records in SQLite and sends through Redis. Every way
of starting a run (dashboard, editor, API, queue) goes through ``prepare_config``: the config is
validated once and stored whole (migrated, over OneTrainer's defaults, concepts and samples
inline), so the same input gives the same ``config.json`` whichever button started it.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import redis
from flask import current_app, request

from webapp import store
from webapp.config.builtin import disk
from webapp.config.builtin.backend_choice import ONETRAINER, choose_backend, onetrainer_dir
from webapp.config.builtin.multi_gpu import requested_gpus
from webapp.config.builtin.train_settings import ConfigError, TrainSettings
from webapp.config.checks import Report, validate
from webapp.config.library import ConfigLibrary
from webapp.config.onetrainer_rules import onetrainer_warnings
from webapp.config.loading import settle_default_samples
from webapp.eventlog import NUDGE_FIELD, EventSink
from webapp.protocol import PLAYGROUND_MARKER, Command, Event, Reason, RunState, make_command, make_event
from webapp.settings import NUDGE_STREAM, commands_key, parse_labels
from webapp.web import caps
from webapp.web.auth.identity import current_principal
from webapp.web.configs.files import library, library_errors, read_roots
from webapp.web.configs.scans import scanner
from webapp.web.errors import ApiError, display_path
from webapp.web.extensions import get_db, get_redis
from webapp.web.models.files import record_dataset
from webapp.web.runs.files import run_dir
from webapp.web.runs.views import RESUMABLE_STATES, config_as_run, get_run_view, run_view


def sink() -> EventSink:
    return EventSink(get_db(), get_redis())


def resolve_config(config_name=None, config=None) -> tuple[str, dict]:
    """The config as its file (or the request) holds it, and its name."""
    if config is not None:
        if not isinstance(config, dict):
            raise ApiError(400, "invalid config", "config must be a JSON object")
        return (config_name or "(inline)"), config
    if not config_name:
        raise ApiError(400, "missing field", "give config_name or config")
    with library_errors():
        return config_name, library().read(config_name).raw


def prepare_config(raw, report: Report | None = None) -> dict:
    """The one path from a config as given to the config a run stores; 400 with the fields when it
    cannot run. ``report``: the caller validated ``raw`` already (the editor), so it is not again."""
    workspace = current_app.config["WORKSPACE"]
    report = report or validate(raw, workspace, roots=read_roots())
    if not report.valid:
        raise ApiError(400, "invalid config", report.errors)
    config = settle_default_samples(report.packed, workspace)
    check_runnable(config)
    return config


def check_runnable(config: dict) -> TrainSettings | None:
    """Refuse what the trainer would fail on, before it is queued."""
    choice = choose_backend(config, onetrainer_dir())
    if choice.backend is None:
        raise ApiError(400, "invalid config", [{"field": "backend", "message": choice.reason}])
    if choice.backend == ONETRAINER:  # what OneTrainer would refuse only at its end, refused now
        refused = [w for w in onetrainer_warnings(config, onetrainer_dir(), current_app.config["WORKSPACE"])
                   if w["blocking"]]
        if refused:
            raise ApiError(400, "invalid config", [{"field": w["field"], "message": w["message"]} for w in refused])
        return None
    try:
        settings = TrainSettings.from_config(config, current_app.config["WORKSPACE"])
    except ConfigError as exc:
        raise ApiError(400, "invalid config", exc.errors) from None
    missing = [{"field": "base_model_name", "message": f"no model folder at {display_path(settings.base_model_name)}"}
               ] if not Path(settings.base_model_name).exists() else []
    missing += [{"field": "concepts", "message": f"no image folder at {display_path(path)}"}
                for path in settings.concept_paths if not Path(path).is_dir()]
    if missing:
        raise ApiError(400, "invalid config", missing)
    # counts the dataset's images: in a real thread, as the editor's scans (a 100,000-file folder
    # walked here, in the request's greenlet, held every page of the process for a second)
    short = scanner(current_app).call(disk.shortage, settings, current_app.config["WORKSPACE"] / "runs")
    if short:
        raise ApiError(507, "not enough disk space", short)
    return settings


def started_by() -> str:
    """Who starts a run: the logged-in user or the token's name; with accounts off, the server's
    REMOTE_USER when it sets one, else "local"."""
    principal = current_principal()
    if principal is not None and principal.via != "local":
        return principal.name
    return request.environ.get("REMOTE_USER") or "local"


def queue_run(name: str, config: dict, target: dict | None = None) -> int:
    """Record a checked config as a queued run and tell every dashboard."""
    conn = get_db()
    run_id = store.create_run(conn, name, config, gpus=requested_gpus(config))
    store.set_started_by(conn, run_id, started_by())
    if target:
        store.assignments.set_target(conn, run_id, target)
    sink().emit(run_id, make_event(Event.RUN, state=RunState.QUEUED.value, config_name=name, **(
        {"target": target} if target else {})))
    if PLAYGROUND_MARKER not in config:
        # after the queued event: the fingerprint waits on a thread, and the dispatcher may hand
        # the run out meanwhile
        record_dataset(run_id, config)  # the lineage of the models it will save
    return run_id


def parse_target(raw) -> dict | None:
    """Where a run may go: {"worker": NAME} and/or {"labels": ["24gb", "sdxl"]} (or "24gb,sdxl");
    none: any worker."""
    if raw in (None, "", {}):
        return None
    if not isinstance(raw, dict) or set(raw) - {"worker", "labels"}:
        raise ApiError(400, "invalid field", [{"field": "target", "message": 'an object with "worker" and/or "labels"'}])
    target = {}
    worker = raw.get("worker")
    if worker:
        if not isinstance(worker, str) or len(worker) > 64 or any(c.isspace() for c in worker):
            raise ApiError(400, "invalid field", [{"field": "target.worker", "message": "a worker name (1-64 characters, no spaces)"}])
        target["worker"] = worker
    labels = raw.get("labels")
    if labels:
        if not isinstance(labels, (str, list)) or isinstance(labels, list) and not all(isinstance(x, str) for x in labels):
            raise ApiError(400, "invalid field", [{"field": "target.labels", "message": "a list of labels or a comma-separated string"}])
        target["labels"] = list(parse_labels(labels))[:16]
    return target or None


def start_run(config_name=None, config=None, report: Report | None = None, target=None) -> int:
    name, raw = resolve_config(config_name, config)
    prepared = prepare_config(raw, report)
    caps.check_queue(started_by())
    run_id = queue_run(name, prepared, parse_target(target))
    nudge_dispatcher()
    return run_id


def resume_run(run_id: int) -> dict:
    """Queue an ended run again, same id and folder: the trainer continues from its newest backup."""
    run = run_view(store.get_run(get_db(), run_id))
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if run["state"] not in RESUMABLE_STATES:
        raise ApiError(409, "run cannot be resumed", f"run {run_id} is {run['state']}; "
                       "only failed, stopped or interrupted runs resume")
    if not store.requeue_for_resume(get_db(), run_id):
        raise ApiError(409, "run cannot be resumed", f"run {run_id} changed state meanwhile")
    sink().emit(run_id, make_event(Event.RUN, state=RunState.QUEUED.value, resumed=True))
    nudge_dispatcher()
    return run


def nudge_dispatcher() -> None:
    """The queue changed: the control loop (whichever web process leads it) wakes from its read of
    the nudge stream (the web's own; the recorder reads it with the workers' streams) and dispatches
    now, where it otherwise looks once a second."""
    try:
        get_redis().xadd(NUDGE_STREAM, {NUDGE_FIELD: "1"})
    except redis.RedisError:
        pass  # the dispatcher looks at the queue once a second anyway


def running_run(run_id: int | None = None) -> dict:
    run = run_view(store.get_run(get_db(), run_id) if run_id else store.latest_run(get_db()))
    if run is None or run["state"] != RunState.RUNNING.value:
        raise ApiError(409, "no run is training", "start a run first" if run is None
                       else f"run {run['id']} is {run['state']}")
    return run


def send_command(command: Command, run_id: int | None = None, **data) -> dict:
    run = running_run(run_id)
    if run["stop_requested"] and command is not Command.STOP:
        raise ApiError(409, "run is stopping", f"run {run['id']} is saving and ending")
    try:
        # to the worker that holds the run: the only key of the run's its Redis user may read
        get_redis().rpush(commands_key(run["worker"], run["id"]), json.dumps(make_command(command, **data)))
    except redis.RedisError:
        # refused, never dropped: the caller knows the command did not go out
        raise ApiError(503, "reconnecting", f"Redis cannot be reached, so the {command.value.replace('_', ' ')} "
                       "command was not sent; the run goes on. Try again in a moment.",
                       headers={"Retry-After": "2"}) from None
    if command is Command.STOP:
        store.mark_stop_requested(get_db(), run["id"])
    sink().emit(run["id"], make_event(Event.STATUS, text=_requested_text(command, run)))
    return run


def _requested_text(command: Command, run: dict) -> str:
    current = run.get("status_text") or "training"
    return {Command.STOP: "stopping: finishing the step, then saving"}.get(
        command, f"{current} ({command.value.replace('_', ' ')} requested)")


def enqueue(items: list[dict]) -> list[int]:
    """items: [{config_name | config, overrides}]; every one checked before any is queued."""
    prepared = []
    for item in items:
        name, config = resolve_config(item.get("config_name"), item.get("config"))
        overrides = item.get("overrides") or {}
        if not isinstance(overrides, dict):
            raise ApiError(400, "invalid field", [{"field": "overrides", "message": "must be a JSON object"}])
        prepared.append((name, prepare_config({**config, **overrides}), parse_target(item.get("target"))))
    caps.check_queue(started_by(), len(prepared))
    ids = [queue_run(name, config, target) for name, config, target in prepared]
    nudge_dispatcher()
    return ids


def cancel(run_id: int) -> None:
    conn = get_db()
    if store.get_run(conn, run_id) is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if not store.cancel_queued(conn, run_id):
        raise ApiError(409, "run is not queued", f"run {run_id} has left the queue already; stop it instead")
    sink().emit(run_id, make_event(Event.RUN, state=RunState.CANCELED.value, reason="canceled in the queue",
                                         reason_code=Reason.CANCELED.value))


def delete(run_id: int) -> None:
    run = get_run_view(run_id)
    if RunState(run["state"]).is_active:
        raise ApiError(409, "run is active", f"run {run_id} is {run['state']}: stop or cancel it first")
    if not store.delete_run_rows(get_db(), run_id):
        raise ApiError(409, "run is active", f"run {run_id} changed state meanwhile")
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def run_again(run_id: int) -> int:
    """Queue the config the run was queued with, checked again (paths, backend, caps) as today's
    server sees it, under the same name, with the same target."""
    conn = get_db()
    run = store.get_run(conn, run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if store.samples.is_playground(run):
        raise ApiError(409, "not a training", f"run {run_id} is a playground session; open a new one instead")
    config = prepare_config(store.run_config(run))
    caps.check_queue(started_by(), 1)
    new_id = queue_run(run["config_name"], config, store.assignments.target_of(run) or None)
    nudge_dispatcher()
    return new_id


def clone_config(run_id: int) -> str:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    library = ConfigLibrary(current_app.config["CONFIG_DIR"])
    name = library.free_name(f"{run['config_name'].rsplit('/', 1)[-1]} from run {run_id}")
    library.save(name, config_as_run(run), create=True)
    return name
