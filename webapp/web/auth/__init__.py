"""Accounts, API tokens, the authorization policy, CSRF, security headers and rate limits.

Mode (``AUTH``, env OTWEB_AUTH): "on" or "off"; unset, it is "on" as soon as a user or a token
exists (or OTWEB_ADMIN_TOKEN is set) and "off" otherwise. Off, every request is the local admin:
only safe on loopback, which is why `otweb serve`/`otweb web` refuse another address then.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask

from webapp.store import accounts
from webapp.web.auth import csrf, headers, identity, limits, policy, proxies
from webapp.store.accounts import resolve_mode

SECRET_FILE = "secret_key"
MIN_ADMIN_TOKEN = 16


def _secret_key(workspace: Path) -> str:
    """OTWEB_SECRET_KEY, else one generated once and kept in the workspace (mode 0600). Written
    aside and linked into place, so that web workers starting together agree on one key."""
    path = workspace / SECRET_FILE
    if not path.exists():
        aside = workspace / f".{SECRET_FILE}.{os.getpid()}"
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process won: use its key
        finally:
            aside.unlink()
    return path.read_text().strip()


def init_app(app: Flask) -> None:
    config = app.config
    admin_token = config.get("ADMIN_TOKEN")
    if admin_token is not None:
        admin_token = str(admin_token)
        if len(admin_token) < MIN_ADMIN_TOKEN:
            raise RuntimeError(f"OTWEB_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN} characters")
        config["ADMIN_TOKEN"] = admin_token
    accounts.connect(config["DATABASE"]).close()  # the tables, before anyone asks
    config["AUTH"] = resolve_mode(config.get("AUTH"), admin_token, config["DATABASE"])
    if not config.get("SECRET_KEY") or config["SECRET_KEY"] == "dev":
        config["SECRET_KEY"] = _secret_key(config["WORKSPACE"])
    proxies.init_app(app)  # before the policy: the Host check and the real client address come first
    config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    app.session_interface = headers.SessionInterface()

    identity.login_manager.init_app(app)
    identity.login_manager.session_protection = "basic"
    limits.init_app(app)
    app.before_request(policy.authorize)
    app.before_request(csrf.protect)
    app.after_request(headers.add_security_headers)
    app.jinja_env.globals.update(csrf_token=csrf.csrf_token, csrf_field=csrf.csrf_field,
                                 current_principal=identity.current_principal, can=identity.can)
    app.jinja_env.filters["error_text"] = identity.error_text
