"""Runs: the history page, a run's page (config, timeline, chart, samples, log, files) and the
actions on runs and the queue. The JSON side is runs_api.py; both call run_actions and run_views."""
from __future__ import annotations

import json

from flask import Blueprint, make_response, render_template, request, url_for

from webapp import store
from webapp.protocol import Command
from webapp.web.runs import actions as run_actions
from webapp.web.runs import banner as run_banner
from webapp.web.runs import compare as run_compare
from webapp.web.runs import views as run_views
from webapp.web.errors import ApiError, flash
from webapp.web.api_input import before_arg, page_of
from webapp.web.auth.identity import can
from webapp.web.extensions import get_db
from webapp.web.runs.actions import cancel, clone_config, delete, enqueue
from webapp.web.runs.charts import cached_chart
from webapp.web.runs.dataset_changes import dataset_changes
from webapp.web.runs.files import run_dir, run_files
from webapp.web.runs.log import log_view
from webapp.web.runs.views import config_as_run, get_run_view, summarize

bp = Blueprint("runs", __name__)
HISTORY_PAGE = 20  # runs a page of the history shows (~1 ms each); "Older runs" pages on by id


def queue_panel(message: str | None = None, status: int = 200):
    conn = get_db()
    return render_template("runs/_queue.html", queue=[summarize(r) for r in store.queued_runs(conn)],
                           paused=store.queue_paused(conn), message=message,
                           recent=[summarize(r) for r in store.recent_finished(conn)]), status


# -- pages ------------------------------------------------------------------------------------

@bp.get("/runs")
def history():
    filters = {key: request.args.get(key, "").strip() for key in store.HISTORY_FILTERS}
    conn = get_db()
    rows, next_before = page_of(store.history(conn, filters, limit=HISTORY_PAGE + 1, before=before_arg()), HISTORY_PAGE)
    runs = [summarize(r) for r in rows]
    glance = run_views.list_glance(conn, [run["id"] for run in runs])
    return render_template("runs/index.html", runs=runs, filters=filters, choices=store.distinct_values(conn),
                           glance=glance, next_before=next_before, paged="before" in request.args,
                           query={key: value for key, value in filters.items() if value})


@bp.get("/runs/compare")
def compare():
    ids = run_compare.parse_ids(request.args.getlist("run"))
    step = request.args.get("step", "")
    return render_template("runs/compare.html", **run_compare.compare(ids, int(step) if step.isdigit() else None))


@bp.get("/runs/<int:run_id>")
def page(run_id: int):
    run = get_run_view(run_id)
    conn = get_db()
    config = config_as_run(store.get_run(conn, run_id))
    return render_template(
        "runs/run.html", run=run, last_seq=store.last_seq(conn), dataset_changes=dataset_changes(run_id, config),
        config_text=json.dumps(config, indent=2),
        timeline=store.timeline(conn, run_id), samples=store.list_samples(conn, run_id, limit=60),
        chart_html=cached_chart(run_id), log=log_view(run_id, fold=not can("admin")), query="",
        files=run_files(run_dir(run_id), run["output_path"]), kept=store.kept_files(conn, run_id),
        disk=store.disk_use.of_run(conn, run_id))


@bp.get("/runs/<int:run_id>/status")
def status(run_id: int):
    conn = get_db()
    return render_template("runs/_status.html", run=get_run_view(run_id), timeline=store.timeline(conn, run_id))


@bp.get("/runs/<int:run_id>/chart")
def chart(run_id: int):
    get_run_view(run_id)
    return cached_chart(run_id)


@bp.get("/runs/<int:run_id>/log")
def log(run_id: int):
    get_run_view(run_id)
    query = request.args.get("q", "").strip()
    return render_template("runs/_log.html", log=log_view(run_id, query, fold=not can("admin")), query=query)


@bp.get("/runs/<int:run_id>/files")
def files(run_id: int):
    run = get_run_view(run_id)
    return render_template("runs/_files.html", run=run, files=run_files(run_dir(run_id), run["output_path"]),
                           kept=store.kept_files(get_db(), run_id), disk=store.disk_use.of_run(get_db(), run_id))


@bp.get("/queue/panel")
def panel():
    return queue_panel()


# -- actions (POST; answered with a flash, or a redirect for htmx) -------------------------

@bp.post("/runs/<int:run_id>/stop")
def stop(run_id: int):
    run_actions.send_command(Command.STOP, run_id)
    return flash(f"Stop sent to run #{run_id}.")


@bp.post("/runs/<int:run_id>/seen")
def seen(run_id: int):
    """Dismiss the "run ended" banner, for this run and those before it."""
    response = make_response("", 200)
    response.set_cookie(run_banner.SEEN_COOKIE, str(max(run_id, run_banner.seen_run())),
                        max_age=run_banner.SEEN_MAX_AGE_S, httponly=True, samesite="Lax",
                        secure=request.is_secure, path=request.script_root or "/")
    return response


@bp.post("/runs/<int:run_id>/again")
def again(run_id: int):
    new_id = run_actions.run_again(run_id)
    return "", 204, {"HX-Redirect": url_for("runs.page", run_id=new_id)}


@bp.post("/runs/<int:run_id>/clone")
def clone(run_id: int):
    name = clone_config(run_id)
    return "", 204, {"HX-Redirect": url_for("configs.edit", name=name)}


@bp.post("/runs/<int:run_id>/delete")
def delete_page(run_id: int):
    if request.form.get("confirm") != str(run_id):
        raise ApiError(400, "not confirmed", f"type the run number ({run_id}) to delete it and its files")
    delete(run_id)
    return "", 204, {"HX-Redirect": url_for("runs.history")}


@bp.post("/queue/add")
def queue_add():
    count = request.form.get("count", "1")
    if not count.isdigit() or not 1 <= int(count) <= 20:
        raise ApiError(400, "invalid field", [{"field": "count", "message": "must be between 1 and 20"}])
    ids = enqueue([{"config_name": request.form.get("config_name")}] * int(count))
    return queue_panel(f"Queued run{'s' if len(ids) > 1 else ''} " + ", ".join(f"#{i}" for i in ids) + ".")


@bp.post("/queue/<int:run_id>/move/<direction>")
def queue_move(run_id: int, direction: str):
    offset = {"up": -1, "down": 1, "top": -10**6}.get(direction)
    if offset is None:
        raise ApiError(404, "unknown direction", "up, down or top")
    store.move_in_queue(get_db(), run_id, offset)
    return queue_panel()


@bp.post("/queue/<int:run_id>/cancel")
def queue_cancel(run_id: int):
    cancel(run_id)
    return queue_panel(f"Run #{run_id} canceled.")


@bp.post("/queue/pause")
def queue_pause():
    store.set_queue_paused(get_db(), request.form.get("paused", "1") == "1")
    run_actions.nudge_dispatcher()
    return queue_panel()
