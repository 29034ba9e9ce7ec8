"""A playground gives way to training (issue 31, point 1), on a real Redis and SQLite: with the only
worker holding an open playground session, a queued training makes the dispatcher close the session
(a stop command in the worker's command list), say so on both, and do it once; a worker that is
free, or a second playground, closes nothing."""
from __future__ import annotations

import json
import time

import redis

from webapp import store
from webapp.control.dispatch import Dispatcher
from webapp.protocol import PLAYGROUND_MARKER
from webapp.settings import WORKERS_KEY, commands_key, heartbeat_key


def _setup(app, redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    conn = store.connect(app.config["DATABASE"])
    client.sadd(WORKERS_KEY, "w1")
    session = store.create_run(conn, "playground", {PLAYGROUND_MARKER: {"source": "demo_lora.safetensors"}})
    assert store.assignments.assign(conn, session, "w1", "as1")
    client.set(heartbeat_key("w1"), json.dumps({"devices": [0], "run_id": session, "time": time.time()}), ex=60)
    return client, conn, session


def test_a_waiting_training_closes_the_playground_once(app, redis_url):
    client, conn, session = _setup(app, redis_url)
    run_id = store.create_run(conn, "demo", {"epochs": 1})
    dispatcher = Dispatcher(conn, client)
    dispatcher.step()
    dispatcher.step()
    commands = client.lrange(commands_key("w1", session), 0, -1)
    assert [json.loads(c)["command"] for c in commands] == ["stop"]  # asked once
    assert store.get_run(conn, session)["stop_requested"]
    logs = store.recent_events(conn, session, "log")
    assert [e["data"]["yielded_to"] for e in logs] == [run_id]
    assert f"playground (#{session})" in store.get_run(conn, run_id)["status_text"]
    assert store.get_run(conn, run_id)["state"] == "queued"  # it starts once the worker is free


def test_a_queued_playground_does_not_close_another(app, redis_url):
    client, conn, session = _setup(app, redis_url)
    store.create_run(conn, "playground", {PLAYGROUND_MARKER: {"source": "other"}})
    Dispatcher(conn, client).step()
    assert client.llen(commands_key("w1", session)) == 0
    assert not store.get_run(conn, session)["stop_requested"]
