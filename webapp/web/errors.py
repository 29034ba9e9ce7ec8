"""Errors answer JSON ({"error", "detail"}) to API callers and a page to browsers."""
from __future__ import annotations

from flask import jsonify, render_template, request
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """Raised by a handler for anything the caller got wrong."""

    def __init__(self, status: int, error: str, detail=None):
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.blueprint == "api":
        return True
    if request.headers.get("HX-Request"):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" and not request.headers.get("HX-Request")


def init_app(app) -> None:
    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return _answer(exc.status, exc.error, exc.detail)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        return _answer(exc.code or 500, exc.name, exc.description)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        app.logger.exception("unhandled error")
        return _answer(500, "Internal Server Error", "an unexpected error; the server log has details")


def _answer(status: int, error: str, detail):
    if request.headers.get("HX-Request"):
        # htmx swaps this into the page's flash area (see the htmx-config meta in base.html)
        return render_template("_flash.html", message=error, detail=detail, level="error"), status
    if wants_json():
        return jsonify(error=error, detail=detail), status
    return render_template("errors/error.html", status=status, error=error, detail=detail), status
