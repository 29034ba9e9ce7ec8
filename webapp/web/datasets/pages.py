"""The Datasets pages: the library, one dataset's grid with its captions, uploads (static/datasets.js
talks to the JSON API), bulk caption changes. Each action is a plain form POST; with htmx only the
part that changed comes back, and a refusal comes back as a message with its 4xx status."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, send_file, url_for

from webapp.web.api_input import int_arg
from webapp.web.datasets import captions, grid, library as library_rules
from webapp.web.datasets.access import image_of, in_thread, index_of, library, peek_index, users, workspace
from webapp.web.datasets.library import DatasetError

bp = Blueprint("datasets", __name__)
TAGS_SHOWN = 30
THUMBS_SHOWN = 4  # the concept editor's strip of each dataset


def is_htmx() -> bool:
    return bool(request.headers.get("HX-Request"))


def message(text: str, detail=None, status: int = 200, template: str = "datasets/_message.html"):
    level = "error" if status >= 400 else "info"
    return render_template(template, message=text, detail=detail, level=level), status


def refusal(exc: DatasetError):
    detail = exc.detail if isinstance(exc.detail, str) else "; ".join(d.get("message", "") for d in exc.detail or [])
    return message(exc.error, detail, exc.status)


@bp.app_template_global("library_datasets")
def library_datasets() -> list[dict]:
    """For the concept editor's picker: each dataset's folder, its counts and first images."""
    found = []
    for dataset in library().entries():
        index = peek_index(dataset)  # never waits: counted in the background, shown once ready
        first = [image.rel for image in index.images if image.readable][:THUMBS_SHOWN] if index else []
        figures = library_rules.stats(index) if index else None
        found.append({"key": dataset.key, "name": dataset.name, "path": str(dataset.folder), "writable": dataset.writable,
                      "stats": figures, "first": first})
    return found


def _entries() -> list:
    """Each dataset with its figures as last counted (None while the first count runs)."""
    entries = []
    for dataset in library().entries():
        index = peek_index(dataset)
        entries.append((dataset, library_rules.stats(index) if index else None))
    return entries


@bp.get("/datasets")
def index():
    return render_template("datasets/index.html", entries=_entries())


@bp.get("/datasets/list")
def list_partial():
    """The library's table: the page asks again while a dataset is still being counted."""
    return render_template("datasets/_library.html", entries=_entries())


@bp.post("/datasets")
def create():
    try:
        dataset = library().create((request.form.get("name") or "").strip())
    except DatasetError as exc:
        return refusal(exc)
    target = url_for("datasets.page", key=dataset.key)
    if is_htmx():
        return "", 201, {"HX-Redirect": target}
    return redirect(target, 303)


def _grid_context(dataset, filters) -> dict:
    found = grid.filtered(index_of(dataset).images, filters)
    page, number, pages = grid.paged(found, int_arg("page", 1, minimum=1, maximum=10**6))
    return {"dataset": dataset, "filters": filters, "images": page, "page": number, "pages": pages,
            "total": len(found), "token": captions.token}


@bp.get("/datasets/<key>")
def page(key: str):
    try:
        dataset = library().get(key)
        filters = grid.Filters.from_args(request.args)
    except DatasetError as exc:
        return refusal(exc)
    index = index_of(dataset)
    return render_template("datasets/dataset.html", stats=library_rules.stats(index), used_by=users(dataset),
                           tags=captions.tag_frequency(index.images, TAGS_SHOWN),
                           can_undo=captions.has_undo(dataset, workspace()), **_grid_context(dataset, filters))


@bp.get("/datasets/<key>/grid")
def grid_partial(key: str):
    try:
        dataset = library().get(key)
        filters = grid.Filters.from_args(request.args)
    except DatasetError as exc:
        return refusal(exc)
    return render_template("datasets/_grid.html", **_grid_context(dataset, filters))


@bp.get("/datasets/<key>/thumbnail/<path:rel>")
def thumbnail(key: str, rel: str):
    try:
        dataset = library().get(key)
    except DatasetError as exc:
        return refusal(exc)
    image = image_of(dataset, rel)
    if not image.readable:
        return message("unreadable image", rel, 404)
    response = send_file(in_thread(grid.thumbnail, workspace(), dataset, image), mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


@bp.post("/datasets/<key>/caption")
def save_caption(key: str):
    """A refusal (409: changed since it was loaded) comes back in the caption's own form, with
    the text as typed, so nothing typed is lost."""
    form = request.form
    rel, text = form.get("image") or "", form.get("caption", "")
    try:
        dataset = library().writable(key)
        image = image_of(dataset, rel)
        new_token = captions.save(dataset, image, text, form.get("token"))
    except DatasetError as exc:
        if exc.status != 409:
            return refusal(exc)
        return render_template("datasets/_caption.html", dataset=dataset, rel=rel, caption=text,
                               token=form.get("token"), saved=False, error=exc.detail), 409
    return render_template("datasets/_caption.html", dataset=dataset, rel=image.rel, caption=text,
                           token=new_token, saved=True)


@bp.post("/datasets/<key>/bulk")
def bulk(key: str):
    form = request.form
    op = {name: form.get(name) for name in ("op", "find", "replace", "word", "where", "tag")}
    try:
        dataset = library().writable(key)
        selected = grid.filtered(index_of(dataset).images, grid.Filters.from_args(form))
        if form.get("action") == "preview":
            changes = len(in_thread(captions.planned, dataset, selected, op))  # every caption read: a real thread
            return message(f"{changes} of {len(selected)} selected captions would change.")
        done = in_thread(captions.apply, dataset, selected, op, workspace())
    except DatasetError as exc:
        return refusal(exc)
    return (*message(f"Changed {done['changed']} captions. Undo is offered until the next bulk change."),
            {"HX-Trigger": "dataset-changed"})


@bp.post("/datasets/<key>/undo")
def undo(key: str):
    try:
        done = captions.undo(library().writable(key), workspace())
    except DatasetError as exc:
        return refusal(exc)
    kept = f"; {len(done['changed_since'])} changed since were left as they are" if done["changed_since"] else ""
    return (*message(f"Restored {done['restored']} captions{kept}."), {"HX-Trigger": "dataset-changed"})


@bp.post("/datasets/<key>/rename")
def rename(key: str):
    try:
        dataset = library().get(key)
        renamed = library().rename(key, (request.form.get("name") or "").strip(), users(dataset)["runs"])
    except DatasetError as exc:
        return refusal(exc)
    return _go(url_for("datasets.page", key=renamed.key))


@bp.post("/datasets/<key>/delete")
def delete(key: str):
    try:
        dataset = library().get(key)
        library().delete(key, users(dataset)["runs"])
    except DatasetError as exc:
        return refusal(exc)
    return _go(url_for("datasets.index"))


def _go(target: str):
    return ("", 204, {"HX-Redirect": target}) if is_htmx() else redirect(target, 303)
