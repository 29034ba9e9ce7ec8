"""The JSON API for scripts (the seed's endpoint names). Errors: {"error", "detail"} with a 4xx."""
from __future__ import annotations

import time

import redis
from flask import Blueprint, current_app, jsonify

from webapp import store
from webapp.control import record_state
from webapp.web.extensions import get_db, get_redis
from webapp.protocol import Command
from webapp.web.runs import actions as run_actions
from webapp.web.runs import views as run_views
from webapp.web.api_input import json_body, optional_run_id
from webapp.web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/health")
def health():
    """503 when a part is down or the record cannot be written (a full disk), saying why."""
    checks, why = {"database": True, "redis": True, "record": True}, None
    try:
        get_db().execute("SELECT 1")
    except Exception:  # noqa: BLE001 - reported, not raised
        checks["database"] = False
    try:
        get_redis().ping()
        blocked = record_state.blocked(get_redis())
        why = blocked["reason"] if blocked else None
    except redis.RedisError:
        checks["redis"] = False
    why = why or record_state.disk_reason(current_app.config["WORKSPACE"])
    checks["record"] = why is None
    ok = all(checks.values())
    extra = {"record_error": why} if why else {}
    return jsonify(status="ok" if ok else "degraded", time=time.time(), **checks, **extra), 200 if ok else 503


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


@bp.get("/training/progress")
def training_progress():
    run = run_views.current_run()
    if run is None:
        raise ApiError(404, "no runs yet", "start a run first")
    return jsonify(run_id=run["id"], state=run["state"], status=run["status_text"],
                   progress=run["progress"])
