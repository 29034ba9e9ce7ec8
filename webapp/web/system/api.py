"""/api/system: the machine, its load, our processes and the record's state, as JSON; bulk deletion of
ended runs (admin)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from webapp.web.api_input import json_body
from webapp.web.system import cleanup
from webapp.web.system.status import processes, record_status, resources, system_info

bp = Blueprint("system_api", __name__, url_prefix="/api/system")


@bp.get("/info")
def api_info():
    return jsonify(system_info())


@bp.get("/resources")
def api_resources():
    return jsonify(resources())


@bp.get("/processes")
def api_processes():
    return jsonify(processes=processes())


@bp.get("/record")
def api_record():
    return jsonify(record_status())


@bp.get("/cleanup")
def cleanup_preview():
    """What the filters pick and what deleting it would free; nothing is deleted."""
    return jsonify(cleanup.preview(cleanup.parse_filters(request.args)))


@bp.post("/cleanup")
def cleanup_delete():
    body = json_body()
    return jsonify(cleanup.delete(cleanup.parse_filters(body), body.get("selection") or ""))
