"""Shared clients, bound to the app by the factory (kept on app.extensions, never module state)."""
from __future__ import annotations

import sqlite3

import redis
from flask import Flask, current_app, g

from . import store


def init_app(app: Flask) -> None:
    app.config["WORKSPACE"].mkdir(parents=True, exist_ok=True)
    conn = store.connect(app.config["DATABASE"])
    store.init_schema(conn)
    conn.close()
    # one pooled client per web process: flask-sse would build a new pool on every publish
    app.extensions["redis"] = redis.Redis.from_url(app.config["REDIS_URL"], decode_responses=True,
                                                   health_check_interval=30)
    app.teardown_appcontext(_close_db)


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = store.connect(current_app.config["DATABASE"])
    return g.db


def _close_db(exc=None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()
