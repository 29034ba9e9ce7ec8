"""Unit tests: the app in-process (Flask's test client), the trainer in-process, real Redis and
SQLite, no spawned trainer, server or browser. What only they use: the app with accounts on."""
from __future__ import annotations

import pytest

from support.accounts import add_users
from support.apps import make_app
from support.paths import database


@pytest.fixture
def auth_app(workspace, config_dir, redis_url, redis_server):
    """Accounts on: one user per role (support.accounts: USERS, PASSWORD)."""
    redis_server.flushall()
    add_users(database(workspace))
    app = make_app(workspace, config_dir, redis_url)
    assert app.config["AUTH"] == "on"
    yield app
