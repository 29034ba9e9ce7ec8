"""The API's own description: the OpenAPI 3.1 document (built by ``openapi_spec`` from the URL map
and ``openapi_operations``) and a page rendering it with the vendored Swagger UI."""
from __future__ import annotations

from flask import Blueprint, jsonify, render_template

from webapp.web.openapi.spec import openapi_document

bp = Blueprint("openapi", __name__, url_prefix="/api")


@bp.get("/openapi.json")
def document():
    return jsonify(openapi_document())


@bp.get("/docs")
def docs():
    return render_template("system/api_docs.html")
