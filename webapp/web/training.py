"""What the dashboard and the JSON API both do to runs: one place, raising ApiError.

The web never talks to a trainer directly: it records in SQLite and sends through Redis.
"""
from __future__ import annotations

import json
from pathlib import Path

import redis
from flask import current_app, request

from .. import configlib, runs_store, store
from ..extensions import get_db, get_redis
from ..settings import WAKE_KEY, commands_key, heartbeat_key
from ..trainer.protocol import Command, Event, RunState, make_command, make_event
from ..config.onetrainer_rules import onetrainer_warnings
from ..trainer.backend_choice import ONETRAINER, choose_backend, onetrainer_dir
from ..trainsettings import ConfigError, TrainSettings
from ..worker.sink import EventSink
from .errors import ApiError, display_path

RESUMABLE_STATES = (RunState.FAILED.value, RunState.STOPPED.value, RunState.INTERRUPTED.value)
CUSTOM_SAMPLE_FIELDS = {  # name: (type, minimum, maximum)
    "seed": (int, -1, 2**32 - 1),
    "steps": (int, 1, 500),
    "cfg_scale": (float, 0.0, 50.0),
    "width": (int, 8, 4096),
    "height": (int, 8, 4096),
}


def sink() -> EventSink:
    return EventSink(get_db(), get_redis())


def resolve_config(config_name=None, config=None) -> tuple[str, dict]:
    if config is not None:
        if not isinstance(config, dict):
            raise ApiError(400, "invalid config", "config must be a JSON object")
        return (config_name or "(inline)"), config
    if not config_name:
        raise ApiError(400, "missing field", "give config_name or config")
    try:
        return config_name, configlib.load_config(current_app.config["CONFIG_DIR"], config_name)
    except configlib.InvalidConfigName as exc:
        raise ApiError(400, "invalid config name", str(exc)) from None
    except configlib.ConfigNotFound as exc:
        raise ApiError(404, "unknown config", str(exc)) from None
    except ValueError as exc:
        raise ApiError(400, "unreadable config", str(exc)) from None


def check_config(config: dict) -> TrainSettings | None:
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
    return settings


def started_by() -> str:
    """Who starts a run: the logged-in user or the token's name; with accounts off, the server's
    REMOTE_USER when it sets one, else "local"."""
    from ..auth.identity import current_principal
    principal = current_principal()
    if principal is not None and principal.via != "local":
        return principal.name
    return request.environ.get("REMOTE_USER") or "local"


def queue_run(name: str, config: dict) -> int:
    """Record a checked config as a queued run and tell every dashboard."""
    conn = get_db()
    run_id = store.create_run(conn, name, config)
    runs_store.set_started_by(conn, run_id, started_by())
    sink().emit(run_id, make_event(Event.RUN, state=RunState.QUEUED.value, config_name=name))
    return run_id


def start_run(config_name=None, config=None) -> int:
    name, config = resolve_config(config_name, config)
    check_config(config)
    run_id = queue_run(name, config)
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


def worker_alive(worker: str | None) -> bool:
    if not worker:
        return False
    try:
        return bool(get_redis().exists(heartbeat_key(worker)))
    except redis.RedisError:
        return False


def run_view(run: dict | None) -> dict | None:
    """The run as a person should see it: a running run with no live worker is interrupted."""
    if run is None:
        return None
    view = dict(run)
    view.pop("config_json", None)
    state = run["state"]
    if state == RunState.RUNNING.value and not worker_alive(run["worker"]):
        state = RunState.INTERRUPTED.value
    view["state"] = state
    running = state == RunState.RUNNING.value
    view["can"] = {"start": not running, "stop": running and not run["stop_requested"],
                   "save": running, "backup": running, "sample": running,
                   "resume": state in RESUMABLE_STATES}
    return view


def current_run() -> dict | None:
    return run_view(store.latest_run(get_db()))


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


def parse_custom_sample(values) -> dict:
    """values: a JSON object or a form. Returns the sample dict, or 400 naming the field."""
    prompt = values.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApiError(400, "invalid sample", [{"field": "prompt", "message": "is required"}])
    sample = {"prompt": prompt.strip(), "negative_prompt": str(values.get("negative_prompt") or "")}
    errors = []
    for name, (kind, low, high) in CUSTOM_SAMPLE_FIELDS.items():
        raw = values.get(name)
        if raw in (None, ""):
            continue
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = kind(raw)
            if kind is int and isinstance(raw, float) and raw != int(raw):
                raise ValueError
        except (TypeError, ValueError):
            errors.append({"field": name, "message": f"must be {'a whole number' if kind is int else 'a number'}"})
            continue
        if not low <= value <= high:
            errors.append({"field": name, "message": f"must be between {low} and {high}"})
            continue
        if name in ("width", "height") and value % 8:
            errors.append({"field": name, "message": "must be a multiple of 8"})
            continue
        sample[name] = value
    if values.get("random_seed") in (True, "on", "true", "1"):
        sample["seed"] = -1
    if errors:
        raise ApiError(400, "invalid sample", errors)
    return sample
