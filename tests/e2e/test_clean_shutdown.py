"""A clean shutdown of everything (issue 33 §3): with runs queued, SIGTERM to the worker, Redis shut
down while the worker's run is stopping, the web stopped; then all started again. The run that
ended `stopped` (its output saved) stays stopped: the worker could not take the assignment out of
its taken list while Redis went away, and must not report it interrupted at its next start."""
from __future__ import annotations

import signal
import time

import pytest
import redis

from support.demo import short_run
from support.fleet import host_folder, redis_server
from support.ports import free_port
from support.servers import serve_web
from support.stack import Stack, run_worker

pytestmark = pytest.mark.slow


def test_a_stopped_run_stays_stopped_after_everything_is_shut_down_and_started_again(tmp_path, demo_workspace,
                                                                                      demo_config):
    with redis_server(tmp_path / "redis") as server:
        web = host_folder(tmp_path, "web", demo_workspace[0])
        env = {"OTWEB_WORKSPACE": str(web), "OTWEB_CONFIG_DIR": str(demo_workspace[1]), "REDIS_URL": server.url,
               "OTWEB_HEARTBEAT_TTL_S": "5"}
        worker_env = {**env, "OTWEB_WORKSPACE": str(host_folder(tmp_path, "w1", demo_workspace[0])),
                      "OTWEB_WORKER_NAME": "w1"}
        port = free_port()
        with serve_web(env, port=port) as url:
            stack = Stack(url, env, None)
            ids = stack.api("POST", "/api/queue", json={"config": short_run(demo_config, epochs=40),
                                                        "count": 5}).json()["run_ids"]
            with run_worker(worker_env) as worker:
                first = ids[0]
                stack.wait_for(lambda: (_run(stack, first)["steps"] or 0) >= 3, timeout=180)
                worker.send_signal(signal.SIGTERM)        # the run stops: its trainer saves
                try:
                    redis.Redis.from_url(server.url).shutdown()  # redis-cli shutdown (it saves its AOF)
                except redis.ConnectionError:
                    pass
                server.proc.wait(timeout=30)
                worker.wait(timeout=60)
        server.start()
        with serve_web(env, port=port) as url, run_worker(worker_env):
            stack = Stack(url, env, None)
            # the worker is past its recovery once it trains the next queued run
            stack.wait_for(lambda: _run(stack, ids[1])["state"] != "queued", timeout=120, every=0.5)
            stack.wait_for(lambda: _run(stack, first)["output_path"], timeout=60, every=0.5)
            time.sleep(2)
            run = _run(stack, first)
            assert run["state"] == "stopped", run.get("reason")
            assert run["output_path"]
            states = [e["data"]["state"] for e in stack.api("GET", f"/api/runs/{first}/events?after=0").json()["events"]
                      if e["event"] == "run"]
            assert states[-1] == "stopped" and "interrupted" not in states


def _run(stack: Stack, run_id: int) -> dict:
    return stack.api("GET", f"/api/runs/{run_id}").json()["run"]
