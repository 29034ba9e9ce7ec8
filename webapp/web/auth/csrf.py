"""CSRF: a per-session secret, rendered once in base.html (a meta tag, and hx-headers on <body>
so every htmx request sends X-CSRF-Token) and as a hidden field in plain forms.

Rules for a state-changing request (any method but GET/HEAD/OPTIONS):
- a bearer token authenticates it: exempt (a browser never adds that header by itself);
- a token in the X-CSRF-Token header or the csrf_token field must match the session's;
- accounts on: no token is refused;
- accounts off (loopback, no session to ride on): a request that names its origin (browsers send
  Origin on POST) must come from this same host; one with neither Origin nor Referer (curl,
  scripts, the test client) passes. This keeps another site open in the same browser from
  posting to http://127.0.0.1:8000 while the local tools keep working.
"""
from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import request, session
from markupsafe import Markup, escape

from webapp.web.errors import ApiError
from webapp.web.auth.identity import auth_on, bearer_token
from webapp.web.auth.policy import SAFE_METHODS

SESSION_KEY = "csrf"
# password-authenticated JSON (a cross-site form cannot send application/json without CORS)
EXEMPT = ("auth.token_login",)
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"


def csrf_token() -> str:
    if SESSION_KEY not in session:
        session[SESSION_KEY] = secrets.token_urlsafe(32)
    return session[SESSION_KEY]


def csrf_field() -> Markup:
    return Markup(f'<input type="hidden" name="{FIELD}" value="{escape(csrf_token())}">')


def rotate() -> None:
    session[SESSION_KEY] = secrets.token_urlsafe(32)


def protect():
    """before_request, after the policy: refuse a forged state-changing request."""
    if request.method in SAFE_METHODS or request.endpoint is None:
        return None
    if (bearer_token() is not None and auth_on()) or request.endpoint in EXEMPT:
        return None
    sent = request.headers.get(HEADER) or _form_token()
    expected = session.get(SESSION_KEY)
    if sent:
        if expected and hmac.compare_digest(str(sent).encode(), expected.encode()):
            return None
        raise ApiError(403, "CSRF token invalid", "reload the page and try again")
    if auth_on():
        raise ApiError(403, "CSRF token missing", "reload the page and try again")
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "cross-site request refused", "this request came from another site")
    return None


def _form_token():
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    return request.form.get(FIELD)
