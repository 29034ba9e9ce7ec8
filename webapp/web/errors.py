"""Errors answer JSON ({"error", "detail"}) to API callers and a page to browsers."""
from __future__ import annotations

from flask import jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """Raised by a handler for anything the caller got wrong."""

    def __init__(self, status: int, error: str, detail=None, headers: dict | None = None):
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers or {}


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
        response = _answer(exc.status, exc.error, exc.detail)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="otweb"'
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        response = _answer(exc.code or 500, exc.name, exc.description)
        # the exception's own headers: Allow on a 405, Retry-After and X-RateLimit on Flask-Limiter's 429
        response.headers.update({k: v for k, v in (exc.get_headers() or []) if k != "Content-Type"})
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        # never the exception's text: it can hold paths, SQL or a secret; the log has it all
        app.logger.exception("unhandled error")
        return _answer(500, "Internal Server Error", "an unexpected error; the server log has details")


def display_path(path) -> str:
    """A server path as a user may see it: relative to the workspace when inside it."""
    from pathlib import Path
    from flask import current_app
    path, workspace = Path(path), current_app.config["WORKSPACE"]
    try:
        return str(path.resolve().relative_to(workspace))
    except ValueError:
        return str(path)


def _answer(status: int, error: str, detail):
    """The response. A 500 never carries an exception's own text."""
    if isinstance(detail, str) and status == 500:
        detail = "an unexpected error; the server log has details"
    if request.headers.get("HX-Request"):
        # htmx swaps this into the page's flash area (see the htmx-config meta in base.html)
        return make_response(render_template("_flash.html", message=error, detail=detail, level="error"), status)
    if wants_json():
        return make_response(jsonify(error=error, detail=detail), status)
    return make_response(render_template("errors/error.html", status=status, error=error, detail=detail), status)


def flash(message: str, status: int = 200):
    """A one-line notice for an htmx form action: info below 400, an error from 400 up."""
    return render_template("_flash.html", message=message, level="info" if status < 400 else "error"), status
