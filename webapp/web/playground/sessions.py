"""Playground sessions: open, close, the current one, what can be opened.

A playground session is a job in the runs queue whose config is the marker
``{"__playground__": {...}}`` (webapp/trainer/backend_factory.py picks the playground backend for
it), so the worker runs it like a run, one GPU job at a time, and its images are ordinary
samples of that job. The sources it can open are listed from our records
(store.samples.lora_sources) and named by key: no request carries a path.
"""
from __future__ import annotations

from pathlib import Path

from flask import current_app

from webapp import store
from webapp.config.builtin.train_settings import SampleSpec
from webapp.protocol import PLAYGROUND_MARKER as MARKER, Command, Event, RunState, make_event
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db
from webapp.web.runs import actions as run_actions
from webapp.web.runs import views as run_views
IDLE_S = 600


def current() -> dict | None:
    """The queued or running playground session, as run_view shows it (None when none)."""
    session = store.runs.open_playground(get_db())
    if session is None:
        return None
    view = run_views.run_view(session)
    return view if view["state"] in (RunState.QUEUED.value, RunState.RUNNING.value) else None


def past_session(run: dict) -> dict:
    spec = store.run_config(run).get(MARKER) or {}
    return {**run, "source": spec.get("source"), "source_run": spec.get("source_run"),
            "yielded_to": yielded_to(run["id"])}


def yielded_to(session_id: int) -> int | None:
    """The training run this session was closed for (control/playground_yield.py logs it), or None."""
    logs = store.recent_events(get_db(), session_id, "log", limit=10)
    return next((e["data"]["yielded_to"] for e in reversed(logs) if e["data"].get("yielded_to")), None)


def require_open() -> dict:
    session = current()
    if session is None or session["state"] != RunState.RUNNING.value:
        raise ApiError(409, "no playground is open", "open one on a trained LoRA first" if session is None
                       else f"playground #{session['id']} is waiting in the queue")
    return session


def sources() -> list[dict]:
    settings = current_app.config["SETTINGS"]
    return store.samples.lora_sources(get_db(), settings.workspace, settings.run_dir)


def open_session(key, idle_s=None) -> int:
    if current() is not None:
        raise ApiError(409, "a playground is already open", "close it first")
    source = next((s for s in sources() if s["key"] == key), None)
    if source is None:
        raise ApiError(400, "invalid field", [{"field": "source", "message": "pick one of the listed LoRA files"}])
    config = source["config"]
    base = Path(source["base_model_name"]).expanduser()
    base = base if base.is_absolute() else current_app.config["WORKSPACE"] / base
    defaults = []
    for raw in config.get("samples") or []:
        if isinstance(raw, dict) and raw.get("enabled", True) is not False:
            try:
                spec = SampleSpec.from_onetrainer(raw)
            except (TypeError, ValueError):
                continue
            defaults.append({"prompt": spec.prompt, "negative_prompt": spec.negative_prompt,
                             "seed": None if spec.random_seed else spec.seed, "steps": spec.steps,
                             "cfg_scale": spec.cfg_scale, "width": spec.width, "height": spec.height,
                             "noise_scheduler": spec.noise_scheduler})
    resolution = str(config.get("resolution") or "512").split(",")[0].strip()
    spec = {"lora": source["path"], "base_model_name": str(base), "source_run": source["run_id"],
            "source": source["label"], "resolution": int(resolution) if resolution.isdigit() else 512,
            "model_type": config.get("model_type") or "STABLE_DIFFUSION_15",
            "train_device": config.get("train_device") or "", "idle_s": idle_s or IDLE_S, "samples": defaults}
    run_id = run_actions.queue_run(f"playground: run {source['run_id']} {source['label']}", {MARKER: spec})
    run_actions.nudge_dispatcher()
    return run_id


def close_session() -> dict:
    session = current()
    if session is None:
        raise ApiError(409, "no playground is open", "nothing to close")
    if session["state"] == RunState.QUEUED.value:
        if store.cancel_queued(get_db(), session["id"]):
            run_actions.sink().emit(session["id"], make_event(Event.RUN, state=RunState.CANCELED.value))
            return session
    run_actions.send_command(Command.STOP, session["id"])
    return session


def idle_arg(values):
    raw = values.get("idle_s")
    if raw in (None, ""):
        return None
    try:
        value = int(raw) if not isinstance(raw, (bool, float)) else 0
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= 3600:
        raise ApiError(400, "invalid field", [{"field": "idle_s", "message": "must be between 1 and 3600"}])
    return value
