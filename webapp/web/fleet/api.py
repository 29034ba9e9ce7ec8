"""/api/workers: the fleet as JSON; drain and remove a worker (admin)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from webapp.web.api_input import json_body
from webapp.web.errors import ApiError
from webapp.web.fleet import status as fleet_status

bp = Blueprint("fleet_api", __name__, url_prefix="/api/workers")


@bp.get("")
def api_workers():
    listed = fleet_status.workers()
    return jsonify(workers=listed, totals=fleet_status.totals(listed))


@bp.post("/<name>/drain")
def drain(name: str):
    """{"drain": true|false}: finish the current run and take no more (false: take runs again)."""
    drain = json_body().get("drain", True)
    if not isinstance(drain, bool):
        raise ApiError(400, "invalid field", [{"field": "drain", "message": "must be true or false"}])
    fleet_status.set_draining(name, drain)
    return jsonify(name=name, draining=drain)


@bp.delete("/<name>")
def remove(name: str):
    fleet_status.remove(name)
    return jsonify(name=name, removed=True)
