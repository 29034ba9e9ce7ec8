"""The System page: the machine, its load and our processes (``status``; the JSON twins: ``api``)."""
from __future__ import annotations

from flask import Blueprint, render_template

from webapp.web.system.status import processes, record_status, sample_with_history, sparklines, system_info

bp = Blueprint("system", __name__)


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
