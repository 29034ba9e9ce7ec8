"""The one place that decides who may call what: a before_request hook, default-deny.

GET/HEAD/OPTIONS need a viewer, every other method an operator, plus two small tables: the
endpoints anyone may call (static files, the login form, health) and the ones only an admin may
call (user management, deleting runs and model versions). A route added later is protected by the default rule
without anyone remembering to decorate it.
"""
from __future__ import annotations

from fnmatch import fnmatchcase

from flask import redirect, request, url_for

from webapp.web.errors import ApiError, wants_json
from webapp.web.auth.identity import current_principal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC = ("static", "*.static", "auth.login", "auth.token_login", "api.health")
ADMIN = ("auth.users*", "auth.user_*", "runs.delete*", "runs_api.delete*", "models.delete*", "models_api.delete*",
         "fleet.drain*", "fleet.remove*", "fleet_api.drain", "fleet_api.remove", "system.cleanup*",
         "system_api.cleanup*")
# POSTs that change nothing on the server (validation), or only the caller's own session or
# subscriptions (a viewer may hear of runs it may read; webhooks reach only admin-approved hosts)
VIEWER_POSTS = ("auth.logout", "configs.check_field", "config_api.validate_config", "notifications.*",
                "notifications_api.*")


def _matches(endpoint: str, patterns) -> bool:
    return any(fnmatchcase(endpoint, pattern) for pattern in patterns)


def required_role(endpoint: str, method: str) -> str | None:
    """None: public. Otherwise the least role that may call this endpoint with this method."""
    if _matches(endpoint, PUBLIC):
        return None
    if _matches(endpoint, ADMIN):
        return "admin"
    if method in SAFE_METHODS or _matches(endpoint, VIEWER_POSTS):
        return "viewer"
    return "operator"


def authorize():
    """before_request: answer 401/403 here, or let the request through."""
    if request.endpoint is None:
        return None  # no route: the 404/405 answer follows
    role = required_role(request.endpoint, request.method)
    if role is None:
        return None
    principal = current_principal()
    if principal is None:
        return _unauthenticated()
    if not principal.can(role):
        raise ApiError(403, "forbidden", f"this needs the {role} role; you are {principal.role}")
    return None


def _unauthenticated():
    login = url_for("auth.login", next=_next_path())
    if request.headers.get("HX-Request"):
        response = redirect(login)
        response.status_code = 401
        response.headers["HX-Redirect"] = login  # htmx sends the whole page to the login form
        return response
    streaming = "text/event-stream" in request.headers.get("Accept", "")
    if request.method in SAFE_METHODS and not wants_json() and not streaming:
        return redirect(login)
    raise ApiError(401, "authentication required", "log in, or send Authorization: Bearer <token>")


def _next_path() -> str:
    path = request.full_path if request.query_string else request.path
    return path if request.method in SAFE_METHODS else "/"
