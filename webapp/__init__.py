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
    # behind OTWEB_PROXY_HOPS reverse proxies: X-Forwarded-For/-Proto/-Host/-Prefix are believed from
    # that many hops (0: none, so a client cannot fake its address); the prefix makes url_for emit
    # /prefix/... (SCRIPT_NAME, set by gunicorn, works without a proxy)
    hops = int(app.config["PROXY_HOPS"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_prefix=hops)

    from . import auth, extensions
    extensions.init_app(app)
    auth.init_app(app)  # accounts, the authorization policy, CSRF, headers, rate limits

    from .web import api, dashboard, errors, events, filters
    errors.init_app(app)
    filters.init_app(app)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(events.bp)
    from .web import auth as auth_pages
    app.register_blueprint(auth_pages.bp)
    from .web import configs
    configs.init_app(app)
    from .web import downloads, runs, runs_api, system
    for blueprint in (runs.bp, runs_api.bp, downloads.bp, system.bp):
        app.register_blueprint(blueprint)
    from .web import playground, samples, samples_api
    for blueprint in (samples.bp, samples_api.bp, playground.bp):
        app.register_blueprint(blueprint)
    return app
