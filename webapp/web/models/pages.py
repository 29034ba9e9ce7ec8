"""The Models pages: versions grouped by model with filters, one version's lineage, two compared;
the form actions (tag, pick, note, delete, open in the playground). Each action answers htmx with
the version's card (or a redirect), a plain form post with a redirect back."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from webapp import store
from webapp.web.models import views as model_views
from webapp.web.api_input import before_arg, page_of
from webapp.web.errors import ApiError, flash
from webapp.web.errors import _answer as error_answer
from webapp.web.extensions import get_db

bp = Blueprint("models", __name__)
MODELS_PAGE = 20  # versions a page shows (each stats its file); "Older versions" pages on in the page's order


@bp.errorhandler(ApiError)
def refused(exc: ApiError):
    """An htmx action's refusal goes to the page's flash area, never over the card it targeted."""
    if not request.headers.get("HX-Request"):
        return error_answer(exc.status, exc.error, exc.detail)
    detail = exc.detail if isinstance(exc.detail, str) else "; ".join(
        str(d.get("message", d)) if isinstance(d, dict) else str(d) for d in exc.detail or [])
    body, status = flash(f"{exc.error}: {detail}" if detail else exc.error, exc.status)
    return body, status, {"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"}


@bp.get("/models")
def index():
    filters, order = model_views.filters_from(request.args)
    versions, next_before = page_of(store.model_versions.list_versions(
        get_db(), filters, order=order, limit=MODELS_PAGE + 1, before=before_arg()), MODELS_PAGE)
    models = model_views.grouped([model_views.version_view(v) for v in versions])
    template = "models/_list.html" if request.headers.get("HX-Request") else "models/index.html"
    query = {key: value for key, value in request.args.items() if key != "before" and value}
    return render_template(template, models=models, filters=filters, order=order, next_before=next_before,
                           query=query, paged="before" in request.args, choices=store.model_versions.choices(get_db()))


@bp.get("/models/<int:version_id>")
def version_page(version_id: int):
    version = model_views.version_detail(model_views.get_version(version_id))
    others = [v for v in store.model_versions.list_versions(get_db(), {"model": version["model"]}, limit=100)
              if v["id"] != version_id]
    return render_template("models/version.html", version=version, others=others)


@bp.get("/models/compare")
def compare():
    ids = [value for value in request.args.getlist("v") if value.isdigit()]
    if len(ids) != 2:
        raise ApiError(400, "pick two versions", "tick two versions to compare, then press Compare")
    result = model_views.compare(*(model_views.get_version(int(i)) for i in ids))
    return render_template("models/compare.html", **result)


def _card(version_id: int):
    if request.headers.get("HX-Request"):
        version = model_views.version_view(model_views.get_version(version_id))
        return render_template("models/_version.html", version=version)
    return redirect(request.referrer or url_for("models.version_page", version_id=version_id))


@bp.post("/models/<int:version_id>/tags")
def tag(version_id: int):
    model_views.change_tags(model_views.get_version(version_id), request.form.to_dict())
    return _card(version_id)


@bp.post("/models/<int:version_id>/note")
def note(version_id: int):
    model_views.set_note(model_views.get_version(version_id), request.form.get("note", ""))
    return _card(version_id)


@bp.post("/models/<int:version_id>/delete")
def delete(version_id: int):
    version = model_views.get_version(version_id)
    if request.form.get("confirm") != str(version_id):
        raise ApiError(400, "not confirmed", f"confirm deleting version {version_id} and its file")
    model_views.delete(version)
    target = url_for("models.index")
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": target}
    return redirect(target)


@bp.post("/models/<int:version_id>/playground")
def open_in_playground(version_id: int):
    from webapp.web.playground.sessions import open_session
    open_session(model_views.playground_key(model_views.get_version(version_id)))
    target = url_for("playground.page")
    if request.headers.get("HX-Request"):
        return "", 204, {"HX-Redirect": target}
    return redirect(target)
