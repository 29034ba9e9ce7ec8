"""JSON API for runs and the queue. (POST /api/runs/<id>/resume lives in api.py.)"""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from webapp import store
from webapp.web.extensions import get_db
from webapp.web.runs import actions as run_actions
from webapp.web.runs import charts as run_charts
from webapp.web.runs import views as run_views
from webapp.web.auth.identity import can, error_text, redacted_data
from webapp.web.api_input import before_arg, int_arg, json_body, page_of
from webapp.web.charts import loss_series
from webapp.web.errors import ApiError

bp = Blueprint("runs_api", __name__, url_prefix="/api")
MAX_POINTS = 20_000
MAX_ITEMS = 50


def _public(run: dict) -> dict:
    public = {k: v for k, v in run.items() if k not in ("config_json",)}
    if public.get("reason"):  # an error's whole text (tracebacks, log tails) is for admins
        public["reason"] = error_text(public["reason"], public.get("id"))
    return public


def _public_event(event: dict) -> dict:
    return event if can("admin") else {**event, "data": redacted_data(event.get("data"), event.get("run_id"))}


@bp.get("/runs")
def list_runs():
    filters = {key: request.args.get(key, "") for key in store.HISTORY_FILTERS}
    limit, offset = int_arg("limit", default=50, minimum=1, maximum=500), int_arg("offset", default=0, minimum=0, maximum=10**9)
    before = before_arg()
    rows, next_before = page_of(store.history(get_db(), filters, limit=limit + 1, offset=offset, before=before), limit)
    return jsonify(runs=[_public(run_views.summarize(r)) for r in rows], limit=limit, offset=offset, before=before,
                   next_before=next_before)


@bp.get("/runs/<int:run_id>")
def get_run(run_id: int):
    run = run_views.get_run_view(run_id)
    config = run_views.config_as_run(store.get_run(get_db(), run_id))
    return jsonify(run=_public(run), config=config)


@bp.delete("/runs/<int:run_id>")
def delete_run(run_id: int):
    run_actions.delete(run_id)
    return jsonify(run_id=run_id, deleted=True)


@bp.get("/runs/<int:run_id>/events")
def run_events(run_id: int):
    run_views.get_run_view(run_id)
    after, limit = int_arg("after", default=0, minimum=0, maximum=2**62), int_arg("limit", default=1000, minimum=1, maximum=5000)
    before = before_arg()
    if before is None:
        events, next_before = store.events_since(get_db(), after, run_id, limit=limit), None
    else:  # going back: the page just before ``before`` (one more read says whether there are older ones)
        events = store.events.events_before(get_db(), run_id, before, limit + 1)
        events, next_before = events[-limit:], (events[1]["seq"] if len(events) > limit else None)
    return jsonify(run_id=run_id, events=[_public_event(e) for e in events],
                   last_seq=events[-1]["seq"] if events else after, next_before=next_before)


@bp.get("/runs/<int:run_id>/loss")
def run_loss(run_id: int):
    run = run_views.get_run_view(run_id)
    max_points = int_arg("max_points", default=1000, minimum=2, maximum=MAX_POINTS)
    series = loss_series(get_db(), run_id, max_points)
    return jsonify(run_id=run_id, max_points=max_points, total=series["total"], points=series["points"],
                   markers=run_charts.markers(run_id, run["output_path"]))


@bp.get("/queue")
def get_queue():
    conn = get_db()
    return jsonify(paused=store.queue_paused(conn), queue=[_public(run_views.summarize(r)) for r in store.queued_runs(conn)])


@bp.post("/queue")
def add_to_queue():
    """{"config_name" | "config", "overrides", "count"} or {"items": [{...}, ...]}."""
    body = json_body()
    items = body.get("items")
    if items is None:
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_ITEMS:
            raise ApiError(400, "invalid field", [{"field": "count", "message": f"must be a whole number from 1 to {MAX_ITEMS}"}])
        items = [body] * count
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS or not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "invalid field", [{"field": "items", "message": f"must be 1 to {MAX_ITEMS} JSON objects"}])
    ids = run_actions.enqueue(items)
    return jsonify(run_ids=ids, state="queued"), 202


@bp.delete("/queue/<int:run_id>")
def cancel_queued(run_id: int):
    run_actions.cancel(run_id)
    return jsonify(run_id=run_id, state="canceled")


@bp.post("/queue/order")
def reorder():
    order = json_body().get("order")
    if not isinstance(order, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in order):
        raise ApiError(400, "invalid field", [{"field": "order", "message": "must be a list of run ids"}])
    queued = {run["id"] for run in store.queued_runs(get_db())}
    moved = [run_id for run_id in order if run_id not in queued]
    if moved:
        raise ApiError(409, "run is not queued", f"run {moved[0]} is not in the queue")
    return jsonify(order=store.reorder_queue(get_db(), order))


@bp.post("/queue/pause")
def pause():
    paused = json_body().get("paused")
    if not isinstance(paused, bool):
        raise ApiError(400, "invalid field", [{"field": "paused", "message": "must be true or false"}])
    store.set_queue_paused(get_db(), paused)
    run_actions.nudge_dispatcher()
    return jsonify(paused=paused)


@bp.post("/runs/<int:run_id>/resume")
def run_resume(run_id: int):
    run_actions.resume_run(run_id)
    return jsonify(run_id=run_id, state="queued", resumed=True), 202
