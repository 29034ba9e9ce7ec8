"""Shared clients, bound to the app by the factory (kept on app.extensions, never module state)."""
from __future__ import annotations

import sqlite3

import redis
from flask import Flask, current_app, g

from webapp import store


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


IDLE_DB_CONNECTIONS = 8  # kept open per process between requests


def get_db() -> sqlite3.Connection:
    """This request's connection: an idle one of this process if there is one. Opening one per
    request cost more than most pages' queries: SQLite parses the whole schema (tables, indexes,
    triggers) on a connection's first statement, and the last connection to close checkpoints the
    WAL and drops its index (0.4-1.5 ms a request, of a 4 ms page)."""
    if "db" not in g:
        idle = current_app.extensions.setdefault("db_idle", [])
        try:
            g.db = idle.pop()
        except IndexError:
            g.db = store.connect(current_app.config["DATABASE"])
    return g.db


def _close_db(exc=None) -> None:
    db = g.pop("db", None)
    if db is None:
        return
    idle = current_app.extensions.setdefault("db_idle", [])
    try:
        if db.in_transaction:  # a request that failed inside one: never hand that on
            db.execute("ROLLBACK")
    except sqlite3.Error:
        db.close()
        return
    if len(idle) < IDLE_DB_CONNECTIONS:
        idle.append(db)
    else:
        db.close()
