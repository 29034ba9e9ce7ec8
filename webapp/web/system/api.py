"""/api/system: the machine, its load, our processes and the record's state, as JSON."""
from __future__ import annotations

from flask import Blueprint, jsonify

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
