"""Rate limits (Flask-Limiter, counted in Redis so every web process shares them): login and
token endpoints per client address and per account, and every state-changing request."""
from __future__ import annotations

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from webapp.web.auth.policy import SAFE_METHODS

limiter = Limiter(key_func=get_remote_address, default_limits_exempt_when=lambda: request.method in SAFE_METHODS,
                  swallow_errors=True)  # Redis down: let requests through rather than answer 500


def storage_uri(redis_url: str) -> str:
    """limits names a unix socket redis+unix://; redis-py and our settings say unix://."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://"):]
    return redis_url


def init_app(app) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", storage_uri(app.config["REDIS_URL"]))
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "otweb:limits")
    app.config.setdefault("RATELIMIT_DEFAULT", app.config.get("RATE_LIMIT_WRITES", "120 per minute"))
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    # Flask-Limiter keeps "enabled" on its one shared object: say it per app, or one app that turned
    # it off (a test) would turn it off for every app made after it
    app.config.setdefault("RATELIMIT_ENABLED", True)
    limiter.init_app(app)


def login_limit():
    from flask import current_app
    return current_app.config.get("RATE_LIMIT_LOGIN", "10 per minute")


def account_login_limit():
    """Login attempts per account name, whatever the address: without it, three addresses
    (127.0.0.1, .2, .3 on one host) guessed 30 passwords a minute on one account."""
    from flask import current_app
    return current_app.config.get("RATE_LIMIT_LOGIN_ACCOUNT", "10 per minute")


def account_key() -> str:
    """The account a login or token request names (form or JSON), folded to lower case."""
    body = request.get_json(silent=True) if request.is_json else None
    name = body.get("username") if isinstance(body, dict) else request.form.get("username")
    return "account:" + (name[:128].casefold() if isinstance(name, str) else "")
