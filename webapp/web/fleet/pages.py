"""The Fleet page: each worker, its GPUs and load, its run; drain and remove (the JSON twins: ``api``)."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from webapp.web.fleet import status as fleet_status

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


@bp.post("/fleet/<name>/drain")
def drain_form(name: str):
    fleet_status.set_draining(name, request.form.get("drain", "1") == "1")
    return live()


@bp.post("/fleet/<name>/remove")
def remove_form(name: str):
    fleet_status.remove(name)
    return live()
