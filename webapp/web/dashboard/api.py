"""The JSON API for scripts (the seed's endpoint names). Errors: {"error", "detail"} with a 4xx."""
from __future__ import annotations

import time

import redis
from flask import Blueprint, jsonify

from webapp import store
from webapp.web.extensions import get_db, get_redis
from webapp.protocol import Command
from webapp.web.runs import actions as run_actions
from webapp.web.runs import views as run_views
from webapp.web.api_input import json_body, optional_run_id
from webapp.web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    checks = {"database": True, "redis": True}
    try:
        get_db().execute("SELECT 1")
    except Exception:  # noqa: BLE001 - reported, not raised
        checks["database"] = False
    try:
        get_redis().ping()
    except redis.RedisError:
        checks["redis"] = False
    ok = all(checks.values())
    return jsonify(status="ok" if ok else "degraded", time=time.time(), **checks), 200 if ok else 503


@bp.get("/training/status")
def training_status():
    run = run_views.current_run()
    queued = sum(1 for r in store.active_runs(get_db()) if r["state"] == "queued")
    return jsonify(run=run, queued=queued)


@bp.post("/training/start")
def training_start():
    body = json_body()
    name = body.get("config_name")
    if name is not None and not isinstance(name, str):
        raise ApiError(400, "invalid field", [{"field": "config_name", "message": "must be a string"}])
    run_id = run_actions.start_run(config_name=name, config=body.get("config"), target=body.get("target"))
    return jsonify(run_id=run_id, state="queued"), 202


def _command_route(command: Command):
    def handler():
        run = run_actions.send_command(command, optional_run_id(json_body()))
        return jsonify(run_id=run["id"], command=command.value, accepted=True), 202
    handler.__name__ = f"training_{command.value}"
    return handler


for _command, _path in ((Command.STOP, "stop"), (Command.BACKUP, "backup"),
                        (Command.SAVE, "save"), (Command.SAMPLE_DEFAULT, "sample")):
    bp.add_url_rule(f"/training/{_path}", view_func=_command_route(_command), methods=["POST"])


@bp.post("/runs/<int:run_id>/resume")
def run_resume(run_id: int):
    run_actions.resume_run(run_id)
    return jsonify(run_id=run_id, state="queued", resumed=True), 202


@bp.get("/training/progress")
def training_progress():
    run = run_views.current_run()
    if run is None:
        raise ApiError(404, "no runs yet", "start a run first")
    return jsonify(run_id=run["id"], state=run["state"], status=run["status_text"],
                   progress=run["progress"])
