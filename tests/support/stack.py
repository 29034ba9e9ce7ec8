"""The whole product for end-to-end tests: a real worker process and the web under gunicorn +
gevent, on a real Redis, over a workspace holding the tiny demo model."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import requests

from support.paths import ROOT, database
from support.polling import wait_for
from support.servers import serve_web


@contextmanager
def run_worker(env: dict):
    log = open(Path(env["OTWEB_WORKSPACE"]) / f"worker-{uuid.uuid4().hex[:6]}.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "webapp.cli", "worker"], cwd=ROOT, env={**os.environ, **env},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


class Stack:
    def __init__(self, url: str, env: dict, worker):
        self.url, self.env, self.worker = url, env, worker

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, self.url + path, timeout=30, **kwargs)

    def start(self, config: dict) -> int:
        answer = self.api("POST", "/api/training/start", json={"config": config})
        assert answer.status_code == 202, answer.text
        return answer.json()["run_id"]

    def status(self) -> dict:
        return self.api("GET", "/api/training/status").json()["run"]

    def wait_for(self, predicate, timeout: float = 180, every: float = 0.2):
        return wait_for(predicate, timeout, every=every)

    def run_state(self, run_id: int) -> dict:
        run = self.status()
        return run if run and run["id"] == run_id else None

    def wait_until_ended(self, run_id: int, timeout: float = 240) -> dict:
        def ended():
            run = self.run_state(run_id)
            return run if run and run["state"] not in ("queued", "running") else None
        return self.wait_for(ended, timeout)


@contextmanager
def demo_stack(demo_workspace, redis_url: str, redis_server, **extra_env):
    """A worker and the web over the demo workspace, on a freshly emptied Redis."""
    redis_server.flushall()
    workspace, config_dir = demo_workspace
    fresh_queue(workspace)
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url,
           "OTWEB_WORKER_NAME": f"test-{uuid.uuid4().hex[:8]}", **extra_env}
    with run_worker(env) as worker, serve_web(env) as url:
        yield Stack(url, env, worker)


def fresh_queue(workspace) -> None:
    """The demo workspace is shared by the session's stacks: what an earlier test left queued (a run
    no worker could take) or paused (a test that failed before its clean-up) must not hold up the next."""
    from webapp import store
    conn = store.connect(database(workspace))
    try:
        store.init_schema(conn)
        conn.execute("UPDATE runs SET state = 'canceled', status_text = 'canceled between tests' WHERE state = 'queued'")
        store.set_queue_paused(conn, False)
    finally:
        conn.close()
