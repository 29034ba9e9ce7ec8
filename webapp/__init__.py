"""OneTrainer Web: the Flask app factory. The web side never imports torch."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    test_config = dict(test_config or {})
    # paths and Redis go through Settings, so the web, the worker and the CLI read them alike
    settings = Settings.from_env(**{key.lower(): test_config.pop(key) for key in
                                    ("WORKSPACE", "CONFIG_DIR", "REDIS_URL") if key in test_config})
    app.config.from_mapping(SECRET_KEY="dev", SSE_HEARTBEAT_S=15, SSE_RETRY_MS=2000)
    app.config.from_prefixed_env("OTWEB")  # e.g. OTWEB_SECRET_KEY, OTWEB_SSE_HEARTBEAT_S=1 (parsed as JSON)
    app.config.update(test_config)
    # set last: OTWEB_WORKSPACE etc. arrive above as plain strings, Settings owns them
    app.config.from_mapping(SETTINGS=settings, WORKSPACE=settings.workspace, CONFIG_DIR=settings.config_dir,
                            DATABASE=settings.database, REDIS_URL=settings.redis_url)
    if not app.config["REDIS_URL"]:
        raise RuntimeError("REDIS_URL is not set: start the app with `otweb serve` (embedded Redis) "
                           "or point REDIS_URL at a Redis server")
    # behind a reverse proxy on a sub-path: X-Forwarded-Prefix makes url_for emit /prefix/...
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)

    from . import extensions
    extensions.init_app(app)

    from .web import api, dashboard, errors, events, filters
    errors.init_app(app)
    filters.init_app(app)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(events.bp)
    from .web import configs
    configs.init_app(app)
    from .web import downloads, runs, runs_api, system
    for blueprint in (runs.bp, runs_api.bp, downloads.bp, system.bp):
        app.register_blueprint(blueprint)
    return app
