"""The System page: the machine, its load and our processes (``status``; the JSON twins: ``api``); the
admin's bulk deletion of ended runs (``cleanup``)."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from webapp.store.run_selection import ENDED_STATES
from webapp.web.errors import ApiError
from webapp.web.system import cleanup
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


@bp.get("/system/cleanup")
def cleanup_page():
    """The filters; with any given, what they pick and what deleting it frees."""
    shown, error = None, None
    if any(request.args.get(name) for name in cleanup.FILTERS):
        try:
            shown = cleanup.preview(cleanup.parse_filters(request.args))
        except ApiError as exc:  # said in the page, beside the form
            error = exc
    return render_template("system/cleanup.html", shown=shown, error=error, values=request.args, states=ENDED_STATES), \
        400 if error else 200


@bp.get("/system/cleanup/preview")
def cleanup_preview():
    return render_template("system/_cleanup_preview.html", shown=cleanup.preview(cleanup.parse_filters(request.args)))


@bp.post("/system/cleanup")
def cleanup_delete():
    done = cleanup.delete(cleanup.parse_filters(request.form), request.form.get("selection", ""))
    return render_template("system/_cleanup_done.html", done=done)
