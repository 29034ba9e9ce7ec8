"""JSON API for model versions: list (filters, order), one version with its lineage, download (with
its sha256), tags and the model's pick, a note, delete (admin: the file too)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from webapp import store
from webapp.web.models import views as model_views
from webapp.web.api_input import before_arg, int_arg, json_body, page_of
from webapp.web.extensions import get_db
from webapp.web.models.files import download as download_file

bp = Blueprint("models_api", __name__, url_prefix="/api/models")


@bp.get("")
def list_models():
    filters, order = model_views.filters_from(request.args)
    limit = int_arg("limit", default=100, minimum=1, maximum=500)
    versions, next_before = page_of(store.model_versions.list_versions(
        get_db(), filters, order=order, limit=limit + 1, before=before_arg()), limit)
    return jsonify(versions=[model_views.version_view(v) for v in versions], order=order, limit=limit,
                   next_before=next_before)


@bp.get("/<int:version_id>")
def get_model(version_id: int):
    return jsonify(version=model_views.version_detail(model_views.get_version(version_id)))


@bp.get("/<int:version_id>/download")
def download(version_id: int):
    return download_file(model_views.get_version(version_id))


@bp.post("/<int:version_id>/tags")
def change_tags(version_id: int):
    version = model_views.get_version(version_id)
    model_views.change_tags(version, json_body())
    changed = model_views.get_version(version_id)
    return jsonify(id=version_id, tags=changed["tags"], picked=changed["picked"])


@bp.post("/<int:version_id>/note")
def set_note(version_id: int):
    version = model_views.get_version(version_id)
    model_views.set_note(version, json_body().get("note"))
    return jsonify(id=version_id, note=model_views.get_version(version_id)["note"])


@bp.delete("/<int:version_id>")
def delete_model(version_id: int):
    return jsonify(model_views.delete(model_views.get_version(version_id)))
