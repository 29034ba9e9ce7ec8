"""The System page and /api/system: the machine, its load and our processes (``system_status``)."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from webapp.web.system.status import (processes, record_status, resources, sample_with_history, sparklines,
                                      system_info)

bp = Blueprint("system", __name__)


@bp.get("/api/system/info")
def api_info():
    return jsonify(system_info())


@bp.get("/api/system/resources")
def api_resources():
    return jsonify(resources())


@bp.get("/api/system/processes")
def api_processes():
    return jsonify(processes=processes())


@bp.get("/api/system/record")
def api_record():
    return jsonify(record_status())


@bp.get("/system")
def page():
    now, history = sample_with_history()
    return render_template("system/index.html", info=system_info(), now=now, history=sparklines(history),
                           processes=processes(), record=record_status())


@bp.get("/system/live")
def live():
    """The partial the page fetches once a second while it is open."""
    now, history = sample_with_history()
    return render_template("system/_live.html", now=now, history=sparklines(history), processes=processes())
