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
from webapp.config.builtin.backend_choice import ONETRAINER, choose_backend, onetrainer_dir
from webapp.config.builtin.settings import ConfigError, TrainSettings
from webapp.config.checks import Report, validate
from webapp.config.library import ConfigLibrary
from webapp.config.loading import settle_default_samples
from webapp.eventlog import EventSink
from webapp.protocol import Command, Event, RunState, make_command, make_event
from webapp.settings import WAKE_KEY, commands_key
from webapp.web import caps
from webapp.web.config_files import library, library_errors, read_roots
from webapp.web.errors import ApiError, display_path
from webapp.web.extensions import get_db, get_redis
from webapp.web.run_files import run_dir
from webapp.web.run_views import RESUMABLE_STATES, config_as_run, get_run_view, run_view


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
    if choice.backend == ONETRAINER:
        return None  # OneTrainer checks its own config; its errors end the run as failed
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
    return settings


def started_by() -> str:
    """Who starts a run: the logged-in user or the token's name; with accounts off, the server's
    REMOTE_USER when it sets one, else "local"."""
    from webapp.web.auth.identity import current_principal
    principal = current_principal()
    if principal is not None and principal.via != "local":
        return principal.name
    return request.environ.get("REMOTE_USER") or "local"


def queue_run(name: str, config: dict) -> int:
    """Record a checked config as a queued run and tell every dashboard."""
    conn = get_db()
    run_id = store.create_run(conn, name, config)
    store.set_started_by(conn, run_id, started_by())
    sink().emit(run_id, make_event(Event.RUN, state=RunState.QUEUED.value, config_name=name))
    return run_id


def start_run(config_name=None, config=None, report: Report | None = None) -> int:
    name, raw = resolve_config(config_name, config)
    prepared = prepare_config(raw, report)
    caps.check_queue(started_by())
    run_id = queue_run(name, prepared)
    nudge_workers()
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
    nudge_workers()
    return run


def nudge_workers() -> None:
    try:
        get_redis().lpush(WAKE_KEY, 1)
        get_redis().ltrim(WAKE_KEY, 0, 9)  # a nudge, not a queue: the queue is in SQLite
    except redis.RedisError:
        pass  # workers poll SQLite every second anyway


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
    get_redis().rpush(commands_key(run["id"]), json.dumps(make_command(command, **data)))
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
        prepared.append((name, prepare_config({**config, **overrides})))
    caps.check_queue(started_by(), len(prepared))
    ids = [queue_run(name, config) for name, config in prepared]
    nudge_workers()
    return ids


def cancel(run_id: int) -> None:
    conn = get_db()
    if store.get_run(conn, run_id) is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if not store.cancel_queued(conn, run_id):
        raise ApiError(409, "run is not queued", f"run {run_id} has left the queue already; stop it instead")
    sink().emit(run_id, make_event(Event.RUN, state=RunState.CANCELED.value, reason="canceled in the queue"))


def delete(run_id: int) -> None:
    run = get_run_view(run_id)
    if RunState(run["state"]).is_active:
        raise ApiError(409, "run is active", f"run {run_id} is {run['state']}: stop or cancel it first")
    if not store.delete_run_rows(get_db(), run_id):
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
