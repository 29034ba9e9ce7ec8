"""Security headers on every answer (HSTS over HTTPS), and a session cookie that is Secure over
HTTPS and scoped to the app's mount path (/trainer behind the proxy), not the whole host."""
from __future__ import annotations

from flask import request
from flask.sessions import SecureCookieSessionInterface

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
       "base-uri 'self'; form-action 'self'")


def add_security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Secure when the request came over HTTPS (directly, or X-Forwarded-Proto through ProxyFix)."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def get_cookie_path(self, app) -> str:
        return app.config.get("SESSION_COOKIE_PATH") or request.script_root or "/"
