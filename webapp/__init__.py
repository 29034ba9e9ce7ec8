"""OneTrainer Web: the Flask app factory.

The package holds the three processes and what they share (see the README's code map): ``web/``
(the control plane), ``worker/``, ``trainer/`` (the only place torch is imported), and ``protocol``,
``settings``, ``eventlog``, ``store/`` and ``config/``. Flask is imported inside ``create_app``, so
that a worker or a trainer importing this package does not load the web.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from webapp.settings import Settings

if TYPE_CHECKING:
    from flask import Flask

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    from flask import Flask

    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    test_config = dict(test_config or {})
    # paths and Redis go through Settings, so the web, the worker and the CLI read them alike
    settings = Settings.from_env(**{key.lower(): test_config.pop(key) for key in
                                    ("WORKSPACE", "CONFIG_DIR", "REDIS_URL") if key in test_config})
    app.config.from_mapping(SSE_HEARTBEAT_S=15, SSE_RETRY_MS=2000, PROXY_HOPS=0)
    # e.g. OTWEB_SECRET_KEY, OTWEB_SSE_HEARTBEAT_S=1 (parsed as JSON), OTWEB_AUTH, OTWEB_ADMIN_TOKEN
    app.config.from_prefixed_env("OTWEB")
    app.config.update(test_config)
    # set last: OTWEB_WORKSPACE etc. arrive above as plain strings, Settings owns them
    app.config.from_mapping(SETTINGS=settings, WORKSPACE=settings.workspace, CONFIG_DIR=settings.config_dir,
                            DATABASE=settings.database, REDIS_URL=settings.redis_url)
    if not app.config["REDIS_URL"]:
        raise RuntimeError("REDIS_URL is not set: start the app with `otweb serve` (embedded Redis) "
                           "or point REDIS_URL at a Redis server")
    # X-Forwarded-* (OTWEB_PROXY_HOPS) are believed only from OTWEB_TRUSTED_PROXIES: web/auth/proxies.py
    from webapp import web  # here, not at import: the worker and the CLI import this package too
    web.register(app)
    return app
