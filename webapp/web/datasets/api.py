"""The dataset JSON API: the library, uploads (chunked, resumable), the images and their captions.
Viewers read; operators create, upload and edit (the policy's default rule)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from webapp.web.api_input import json_body
from webapp.web.auth.limits import limiter
from webapp.web.datasets import captions, grid, library as library_rules
from webapp.web.datasets.access import (dataset_errors, image_of, in_background, in_thread, index_of, library, uploads,
                                        users, workspace)
from webapp.web.datasets.uploads import MAX_CHUNK
from webapp.web.errors import ApiError

bp = Blueprint("datasets_api", __name__, url_prefix="/api/datasets")


def described(dataset) -> dict:
    return {**dataset.as_json(), "stats": library_rules.stats(index_of(dataset))}


@bp.get("")
def list_datasets():
    with dataset_errors():
        return jsonify(datasets=[described(dataset) for dataset in library().entries()])


@bp.post("")
def create():
    with dataset_errors():
        dataset = library().create(json_body().get("name"))
    return jsonify(described(dataset)), 201


@bp.get("/<key>")
def get_dataset(key: str):
    with dataset_errors():
        dataset = library().get(key)
        return jsonify(**described(dataset), used_by=users(dataset))


@bp.post("/<key>/rename")
def rename(key: str):
    with dataset_errors():
        dataset = library().get(key)
        renamed = library().rename(key, json_body().get("name"), users(dataset)["runs"])
    return jsonify(renamed.as_json())


@bp.delete("/<key>")
def delete(key: str):
    with dataset_errors():
        dataset = library().get(key)
        library().delete(key, users(dataset)["runs"])
    return "", 204


# -- uploads ---------------------------------------------------------------------------------------
@bp.post("/<key>/uploads")
def open_upload(key: str):
    with dataset_errors():
        dataset = library().writable(key)
        # the quotas walk the datasets' folders: in a real thread (no app context there), off the event loop
        opener, everything = uploads(), library()
        state = in_thread(lambda files: opener.open(dataset, files, everything.bytes_used()), json_body().get("files"))
    return jsonify(state), 201


@bp.get("/<key>/uploads/<upload_id>")
def upload_state(key: str, upload_id: str):
    with dataset_errors():
        return jsonify(uploads().state(library().writable(key), upload_id))


@bp.put("/<key>/uploads/<upload_id>/<int:index>/<int:offset>")
@limiter.exempt  # hundreds of chunks per upload; each only adds to an upload its opening checked
def put_chunk(key: str, upload_id: str, index: int, offset: int):
    request.max_content_length = MAX_CHUNK
    length = request.content_length
    if length is None:
        raise ApiError(400, "length required", "send Content-Length with each chunk")
    with dataset_errors():
        dataset = library().writable(key)
        answer = uploads().put_chunk(dataset, upload_id, index, offset, request.stream, length, in_background)
    return jsonify(answer)


# -- images and captions ---------------------------------------------------------------------------
def image_json(image) -> dict:
    return {"path": image.rel, "width": image.width, "height": image.height, "bytes": image.size,
            "readable": image.readable, "sha256": image.sha256, "caption": image.caption,
            "token": captions.token(image.caption)}


@bp.get("/<key>/images")
def images(key: str):
    with dataset_errors():
        dataset = library().get(key)
        found = grid.filtered(index_of(dataset).images, grid.Filters.from_args(request.args))
    page, number, pages = grid.paged(found, request.args.get("page", 1, type=int) or 1)
    return jsonify(images=[image_json(image) for image in page], page=number, pages=pages, total=len(found))


@bp.put("/<key>/caption")
def save_caption(key: str):
    body = json_body()
    with dataset_errors():
        dataset = library().writable(key)
        image = image_of(dataset, str(body.get("image") or ""))
        new_token = captions.save(dataset, image, body.get("caption"), body.get("token"))
    return jsonify(image=image.rel, token=new_token)


@bp.post("/<key>/bulk")
def bulk(key: str):
    """Over the images the filters (in the query) select; ``preview``: only count."""
    body = json_body()
    with dataset_errors():
        dataset = library().writable(key)
        selected = grid.filtered(index_of(dataset).images, grid.Filters.from_args(request.args))
        if body.get("preview") is True:  # every caption read (and written): in a real thread
            return jsonify(changes=len(in_thread(captions.planned, dataset, selected, body)), selected=len(selected))
        return jsonify(**in_thread(captions.apply, dataset, selected, body, workspace()), selected=len(selected))


@bp.post("/<key>/undo")
def undo(key: str):
    with dataset_errors():
        return jsonify(captions.undo(library().writable(key), workspace()))


@bp.get("/<key>/tags")
def tags(key: str):
    with dataset_errors():
        found = captions.tag_frequency(index_of(library().get(key)).images)
    return jsonify(tags=[{"tag": tag, "count": count} for tag, count in found])
