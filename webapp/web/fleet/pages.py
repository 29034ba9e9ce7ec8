"""The Fleet page and /api/workers: each worker, its GPUs and load, its run; drain and remove."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request

from webapp.web.fleet import status as fleet_status
from webapp.web.api_input import json_body
from webapp.web.errors import ApiError

bp = Blueprint("fleet", __name__)


@bp.get("/fleet")
def page():
    listed = fleet_status.workers()
    return render_template("fleet/index.html", workers=listed, totals=fleet_status.totals(listed))


@bp.get("/fleet/live")
def live():
    """The partial the page fetches every two seconds while it is open."""
    listed = fleet_status.workers()
    return render_template("fleet/_workers.html", workers=listed, totals=fleet_status.totals(listed))


@bp.get("/fleet/totals")
def totals_partial():
    return render_template("fleet/_totals.html", totals=fleet_status.totals())


@bp.get("/api/workers")
def api_workers():
    listed = fleet_status.workers()
    return jsonify(workers=listed, totals=fleet_status.totals(listed))


@bp.post("/api/workers/<name>/drain")
def drain(name: str):
    """{"drain": true|false}: finish the current run and take no more (false: take runs again)."""
    drain = json_body().get("drain", True)
    if not isinstance(drain, bool):
        raise ApiError(400, "invalid field", [{"field": "drain", "message": "must be true or false"}])
    fleet_status.set_draining(name, drain)
    return jsonify(name=name, draining=drain)


@bp.delete("/api/workers/<name>")
def remove(name: str):
    fleet_status.remove(name)
    return jsonify(name=name, removed=True)


@bp.post("/fleet/<name>/drain")
def drain_form(name: str):
    fleet_status.set_draining(name, request.form.get("drain", "1") == "1")
    return live()


@bp.post("/fleet/<name>/remove")
def remove_form(name: str):
    fleet_status.remove(name)
    return live()
