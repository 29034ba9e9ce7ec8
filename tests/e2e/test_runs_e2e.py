"""The queue end to end: three demo runs queued, the web restarted, the worker killed (SIGKILL, with
its trainer) during the second and started again: the first is completed, the second interrupted
and resumable, the third runs; nothing recorded is lost from SQLite."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from support.demo import short_run
from support.ports import free_port
from support.servers import serve_web
from support.stack import Stack, fresh_queue, run_worker
from webapp import store

pytestmark = pytest.mark.slow


def test_queue_survives_restarts_and_a_killed_worker(demo_workspace, demo_config, redis_url, redis_server):
    redis_server.flushall()
    workspace, config_dir = demo_workspace
    fresh_queue(workspace)  # the demo workspace is shared: no run an earlier test left queued
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url,
           "OTWEB_WORKER_NAME": f"test-{free_port()}", "OTWEB_HEARTBEAT_TTL_S": "5"}
    items = [{"config": short_run(demo_config, epochs=1)}, {"config": short_run(demo_config, epochs=60)},
             {"config": short_run(demo_config, epochs=1)}]
    with serve_web(env) as url:
        stack = Stack(url, env, None)
        assert stack.api("POST", "/api/queue/pause", json={"paused": True}).status_code == 200
        answer = stack.api("POST", "/api/queue", json={"items": items})
        assert answer.status_code == 202, answer.text
        first, second, third = answer.json()["run_ids"]
    with serve_web(env) as url:  # a new web process: the queue and its pause are in SQLite
        stack = Stack(url, env, None)
        queue = stack.api("GET", "/api/queue").json()
        assert queue["paused"] and [r["id"] for r in queue["queue"]] == [first, second, third]
        with run_worker(env) as worker:
            assert stack.api("POST", "/api/queue/pause", json={"paused": False}).json() == {"paused": False}
            run = lambda run_id: stack.api("GET", f"/api/runs/{run_id}").json()["run"]  # noqa: E731
            stack.wait_for(lambda: run(first)["state"] == "completed", timeout=180)
            stack.wait_for(lambda: run(second)["state"] == "running" and (run(second)["steps"] or 0) >= 2, timeout=120)
            recorded = _counts(workspace, second)
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its trainer, with no chance to record anything
            worker.wait()
        # a dead worker's running run shows interrupted once its heartbeat lapses (5 s), never running
        stack.wait_for(lambda: run(second)["state"] == "interrupted", timeout=10)
        with run_worker(env):
            stack.wait_for(lambda: run(third)["state"] == "completed", timeout=180)
            interrupted = run(second)
            assert interrupted["state"] == "interrupted" and interrupted["can"]["resume"]
            timeline = [e["data"]["state"] for e in stack.api("GET", f"/api/runs/{second}/events").json()["events"]
                        if e["event"] == "run"]
            assert timeline[-1] == "interrupted"  # recorded by the restarted worker, not just shown
            first_run = run(first)
            assert first_run["steps"] == first_run["max_step"] == 6
            after = _counts(workspace, second)
            assert after["metrics"] >= recorded["metrics"] and after["events"] > recorded["events"]
            assert _counts(workspace, first)["metrics"] == 6
            # resumable: it goes back in the queue (pause first, so it does not start here)
            stack.api("POST", "/api/queue/pause", json={"paused": True})
            assert stack.api("POST", f"/api/runs/{second}/resume").status_code == 202
            assert [r["id"] for r in stack.api("GET", "/api/queue").json()["queue"]] == [second]
            assert stack.api("DELETE", f"/api/queue/{second}").json()["state"] == "canceled"
            stack.api("POST", "/api/queue/pause", json={"paused": False})


def _counts(workspace: Path, run_id: int) -> dict:
    conn = store.connect(workspace / "otweb.sqlite3")
    try:
        return {table: conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (run_id,)).fetchone()[0]
                for table in ("events", "metrics")}
    finally:
        conn.close()
