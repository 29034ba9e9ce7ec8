"""Log in and out (a session cookie), and for scripts: trade a password for an API token."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from webapp.web.auth import csrf
from webapp.store import accounts
from webapp.web.auth.identity import LoginUser, current_principal
from webapp.web.auth.limits import account_key, account_login_limit, limiter, login_limit
from webapp.web.extensions import get_db
from webapp.web.errors import ApiError

bp = Blueprint("auth", __name__)


def safe_next(raw) -> str:
    """Only a path inside this app (never //host or a full URL): no open redirect. Browsers drop
    tabs and newlines from a URL (/\t/evil.com is //evil.com to them), so any control character,
    space or backslash refuses it."""
    if not isinstance(raw, str) or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in raw):
        return "/"
    parts = urlsplit(raw)
    return "/" if parts.scheme or parts.netloc else raw


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, methods=["POST"])
@limiter.shared_limit(account_login_limit, "login-account", key_func=account_key, methods=["POST"])
def login():
    next_path = safe_next(request.values.get("next"))
    if current_app.config["AUTH"] != "on":
        return redirect(request.script_root + next_path)
    error = None
    if request.method == "POST":
        user = accounts.authenticate(get_db(), request.form.get("username"), request.form.get("password"))
        if user is not None:
            session.clear()  # no session fixation: a fresh session, a fresh CSRF secret
            login_user(LoginUser(user, accounts.create_session(get_db(), user["id"])))
            csrf.rotate()
            return redirect(request.script_root + next_path)
        error = "Wrong user name or password."
    return render_template("auth/login.html", next_path=next_path, error=error), 401 if error else 200


@bp.post("/logout")
def logout():
    if isinstance(current_user, LoginUser):  # ended on the server: a copy of the cookie stops working
        accounts.end_session(get_db(), current_user.session_id)
    logout_user()
    session.clear()
    return redirect(url_for("auth.login") if current_app.config["AUTH"] == "on" else url_for("dashboard.index"))


@bp.post("/api/auth/token")
@limiter.limit(login_limit)
@limiter.shared_limit(account_login_limit, "login-account", key_func=account_key)
def token_login():
    """{"username", "password", "name"} → {"token"}: a token with the user's role, shown once."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid body", "send a JSON object with username, password and name")
    user = accounts.authenticate(get_db(), body.get("username"), body.get("password"))
    if user is None:
        raise ApiError(401, "authentication failed", "wrong user name or password")
    name = body.get("name") or "api"
    if not isinstance(name, str):
        raise ApiError(400, "invalid name", "name must be a string")
    try:
        token_id, token = accounts.create_password_token(get_db(), name, user["name"])
    except accounts.AuthError as exc:
        raise ApiError(400, "invalid token request", str(exc)) from None
    return jsonify(id=token_id, token=token, role=user["role"]), 201


@bp.get("/api/auth/whoami")
def whoami():
    principal = current_principal()
    return jsonify(name=principal.name, role=principal.role, via=principal.via,
                   accounts=current_app.config["AUTH"])


# user management for admins (the policy table makes every auth.user* endpoint admin-only)

@bp.get("/api/auth/users")
def users_list():
    return jsonify(users=accounts.list_users(get_db()))


@bp.post("/api/auth/users")
def users_add():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid body", "send a JSON object with name, password and role")
    try:
        user_id = accounts.add_user(get_db(), body.get("name"), body.get("password"), body.get("role") or "viewer")
    except (accounts.AuthError, TypeError, AttributeError) as exc:
        raise ApiError(400, "invalid user", str(exc) if isinstance(exc, accounts.AuthError) else "name, password: text")
    return jsonify(id=user_id), 201


@bp.delete("/api/auth/users/<name>")
def user_delete(name: str):
    try:
        accounts.remove_user(get_db(), name)
    except accounts.AuthError as exc:
        raise ApiError(404, "unknown user", str(exc)) from None
    return "", 204
