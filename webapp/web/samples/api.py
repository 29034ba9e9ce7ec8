"""/api/samples/*: request samples (default, custom), list them, read one, its image, its thumbnail.

Images are found only through a sample's id: the file's path comes from our record and must lie
in that run's folder, so no request can name a path. A sample request goes to the running run,
or to the open playground (a playground is a run too, see webapp/web/playground/sessions.py).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request, send_file, url_for


from webapp import store
from webapp.web.samples import thumbnails
from webapp.web.extensions import get_db
from webapp.protocol import Command
from webapp.web.playground import sessions as playground
from webapp.web.runs import actions as run_actions
from webapp.web.samples.sample_requests import parse_sample_request
from webapp.web.api_input import before_arg, int_arg, json_body, optional_run_id, page_of
from webapp.web.errors import ApiError
from webapp.web.samples.sample_requests import sample_or_404

bp = Blueprint("samples_api", __name__, url_prefix="/api/samples")
MAX_COUNT = 200
CACHE = "private, max-age=86400, immutable"  # a sample's image never changes under its id


def target_run_id(body: dict) -> int | None:
    """run_id when given; {"playground": true} the open playground (409 when none)."""
    if body.get("playground") in (True, "on", "true", "1"):
        return playground.require_open()["id"]
    return optional_run_id(body)


@bp.post("/default")
def samples_default():
    body = json_body()
    run = run_actions.send_command(Command.SAMPLE_DEFAULT, target_run_id(body))
    return jsonify(run_id=run["id"], command="sample_default", accepted=True), 202


@bp.post("/custom")
def samples_custom():
    body = json_body()
    sample = parse_sample_request(body)
    run = run_actions.send_command(Command.SAMPLE_CUSTOM, target_run_id(body), sample=sample)
    return jsonify(run_id=run["id"], command="sample_custom", sample=sample, accepted=True), 202


@bp.get("/list")
def samples_list():
    run_id = int_arg("run", required=True, minimum=1)
    if store.get_run(get_db(), run_id) is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    kind = request.args.get("kind") or None
    if kind not in (None, "default", "custom"):
        raise ApiError(400, "invalid parameter", [{"field": "kind", "message": "must be default or custom"}])
    limit = int_arg("limit", default=500, minimum=1, maximum=5000)
    samples, next_before = page_of(store.samples.list_for_run(get_db(), run_id, request.args.get("prompt"), kind,
                                                              limit + 1, before_arg()), limit)
    return jsonify(run_id=run_id, samples=[describe(s) for s in samples], next_before=next_before)


@bp.get("/latest")
def samples_latest():
    count = int_arg("count", default=12, minimum=1, maximum=MAX_COUNT)
    return jsonify(samples=[describe(s) for s in store.samples.latest(get_db(), count)])


@bp.get("/<int:sample_id>")
def sample_metadata(sample_id: int):
    return jsonify(describe(sample_or_404(sample_id)))


@bp.get("/<int:sample_id>/image")
def sample_image(sample_id: int):
    """Only through the id: the path comes from our record, never from the request."""
    run_dir, path = image_path(sample_or_404(sample_id))
    return _send(path)


@bp.get("/<int:sample_id>/thumbnail")
def sample_thumbnail(sample_id: int):
    size = int_arg("size", default=thumbnails.SIZES[0])
    if size not in thumbnails.SIZES:
        raise ApiError(400, "invalid parameter", [{"field": "size", "message":
                       f"must be one of {', '.join(map(str, thumbnails.SIZES))}"}])
    run_dir, path = image_path(sample_or_404(sample_id))
    try:
        return _send(thumbnails.thumbnail(run_dir, path, sample_id, size))
    except thumbnails.ImageRefused as exc:
        raise ApiError(422, "image refused", str(exc)) from None


def describe(sample: dict) -> dict:
    """The metadata a caller sees: the record, the image's size, and where to fetch it."""
    settings = sample["settings"]
    return {**sample, "size": {"width": settings.get("width"), "height": settings.get("height"),
                               "bytes": settings.get("bytes")},
            "image_url": url_for("samples_api.sample_image", sample_id=sample["id"]),
            "thumbnail_url": url_for("samples_api.sample_thumbnail", sample_id=sample["id"])}


def image_path(sample: dict):
    """(run folder, image file), or 404 when the recorded path leaves the run folder or is gone."""
    run_dir = current_app.config["SETTINGS"].run_dir(sample["run_id"]).resolve()
    path = (run_dir / sample["path"]).resolve()
    if run_dir not in path.parents or not path.is_file():
        raise ApiError(404, "image missing", f"sample {sample['id']} has no image file any more")
    return run_dir, path


def _send(path):
    response = send_file(path, mimetype="image/png", conditional=True, etag=True, max_age=86400)
    response.headers["Cache-Control"] = CACHE
    return response
