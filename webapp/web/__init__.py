"""The web: the control plane's pages, JSON API and live stream.

``register(app)`` is the one place the web joins the app: its shared clients, accounts and the
authorization policy, error pages, template filters, the SSE broker, and every blueprint, in one
list. Blueprints hold routes only; what several of them do lives beside them as services
(``run_actions``, ``run_views``, ``charts``, ``sample_requests``, ``thumbnails``).
"""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    # imported here, so that importing one of the web's modules (a test, a benchmark) does not
    # load every blueprint and what they need (Pillow for thumbnails, ...)
    from webapp.web import (api, api_input, auth, caps, config_api, configs, control, dashboard, downloads, errors,
                            events, extensions, filters, fleet, models, models_api, openapi, playground, run_banner,
                            runs, runs_api, samples, samples_api, sse, system)
    from webapp.web.auth import routes as auth_routes
    from webapp.web.sse import fragments

    blueprints = (
        dashboard.bp,      # /                    the current run, start, commands, the queue
        api.bp,            # /api/training, /api/health
        events.bp,         # /events, /api/events (SSE)
        auth_routes.bp,    # /login, /logout, /api/auth
        configs.bp,        # /configs             library and editor
        config_api.bp,     # /api/config
        runs.bp,           # /runs                history, run pages, the queue panel
        runs_api.bp,       # /api/runs, /api/queue
        downloads.bp,      # /runs/<id>/files
        system.bp,         # /system, /api/system
        samples.bp,        # /runs/<id>/samples, /samples
        samples_api.bp,    # /api/samples
        playground.bp,     # /playground, /api/playground
        models.bp,         # /models              model versions, their lineage, compare
        models_api.bp,     # /api/models
        openapi.bp,        # /api/openapi.json, /api/docs
        fleet.bp,          # /fleet, /api/workers
    )
    app.json = api_input.StrictJSONProvider(app)
    app.url_value_preprocessor(api_input.refuse_huge_ids)
    extensions.init_app(app)
    caps.init_app(app)  # streams, queued runs, submissions, body size
    auth.init_app(app)  # accounts, the authorization policy, CSRF, headers, rate limits
    errors.init_app(app)
    filters.init_app(app)
    app.jinja_env.globals["ended_run_banner"] = run_banner.ended_run_banner  # base.html, every page
    sse.init_app(app, render=fragments.render_event_fragments)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    control.init_app(app)  # the recorder and the dispatcher (one process leads)
