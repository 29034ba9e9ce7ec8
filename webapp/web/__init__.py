"""The web: the control plane's pages, JSON API and live stream.

``register(app)`` is the one place the web joins the app: its shared clients, accounts and the
authorization policy, error pages, template filters, the SSE broker, and every blueprint, in one
list. One sub-package per area (dashboard, runs, configs, datasets, samples, playground, models, fleet, system,
notifications, auth, sse, openapi), mirroring templates/: ``pages`` and ``api`` hold routes only; what they do lives
beside them as services. What every area uses stays here: ``extensions`` (the shared clients),
``errors``, ``api_input``, ``caps``, ``filters``, ``labels``, ``charts``, ``control`` (starts the
control plane's loop).
"""
from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    # imported here, so that importing one of the web's modules (a test, a benchmark) does not
    # load every blueprint and what they need (Pillow for thumbnails, ...)
    from webapp.web import api_input, auth, caps, control, errors, extensions, filters, sse
    from webapp.web.auth import routes as auth_routes
    from webapp.web.configs import api as configs_api, pages as configs_pages
    from webapp.web.dashboard import api as dashboard_api, pages as dashboard_pages
    from webapp.web.datasets import api as datasets_api, pages as datasets_pages
    from webapp.web.fleet import api as fleet_api, pages as fleet_pages
    from webapp.web.models import api as models_api, pages as models_pages
    from webapp.web.notifications import api as notifications_api, pages as notifications_pages
    from webapp.web.notifications import services as notify_services
    from webapp.web.openapi import routes as openapi_routes
    from webapp.web.playground import pages as playground_pages
    from webapp.web.runs import api as runs_api, banner as run_banner, downloads, next_steps, pages as runs_pages
    from webapp.web.samples import api as samples_api, pages as samples_pages
    from webapp.web.sse import fragments, routes as sse_routes
    from webapp.web.system import api as system_api, pages as system_pages

    blueprints = (
        dashboard_pages.bp,     # /                    the current run, start, commands, the queue
        dashboard_api.bp,       # /api/training, /api/health
        sse_routes.bp,          # /events, /api/events (SSE)
        auth_routes.bp,         # /login, /logout, /api/auth
        configs_pages.bp,       # /configs             library and editor
        configs_api.bp,         # /api/config
        datasets_pages.bp,      # /datasets            the dataset library, uploads, captions
        datasets_api.bp,        # /api/datasets
        runs_pages.bp,          # /runs                history, run pages, the queue panel
        runs_api.bp,            # /api/runs, /api/queue
        downloads.bp,           # /runs/<id>/files
        system_pages.bp,        # /system
        system_api.bp,          # /api/system
        samples_pages.bp,       # /runs/<id>/samples, /samples
        samples_api.bp,         # /api/samples
        playground_pages.bp,    # /playground, /api/playground
        models_pages.bp,        # /models              model versions, their lineage, compare
        models_api.bp,          # /api/models
        openapi_routes.bp,      # /api/openapi.json, /api/docs
        fleet_pages.bp,         # /fleet
        fleet_api.bp,           # /api/workers
        notifications_pages.bp,  # /notifications     subscriptions, delivery logs, a test
        notifications_api.bp,   # /api/notifications
    )
    app.json = api_input.StrictJSONProvider(app)
    app.url_value_preprocessor(api_input.refuse_huge_ids)
    extensions.init_app(app)
    caps.init_app(app)  # streams, queued runs, submissions, body size
    auth.init_app(app)  # accounts, the authorization policy, CSRF, headers, rate limits
    errors.init_app(app)
    filters.init_app(app)
    app.jinja_env.globals["ended_run_banner"] = run_banner.ended_run_banner  # base.html, every page
    app.jinja_env.globals["paused_notifications"] = notify_services.paused_banner  # base.html too
    app.jinja_env.globals["run_next_steps"] = next_steps.next_steps  # the dashboard, once a run saved its model
    sse.init_app(app, render=fragments.render_event_fragments)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    control.init_app(app)  # the recorder and the dispatcher (one process leads)
