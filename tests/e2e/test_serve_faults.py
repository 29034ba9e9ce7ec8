"""`otweb serve` under faults, with real processes and real signals: a dead worker or embedded
Redis comes back within seconds, the web keeps answering, what it shows stays true, Stop works,
and nothing is left behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import requests

from support.demo import short_run
from support.paths import ROOT
from support.polling import wait_for
from support.ports import free_port
from webapp import store

pytestmark = pytest.mark.slow


@pytest.fixture
def served(demo_workspace, tmp_path):
    """otweb serve on a copy of the demo workspace, with its embedded Redis; stopped after."""
    workspace, config_dir = tmp_path / "workspace", tmp_path / "configs"
    shutil.copytree(demo_workspace[0] / "models", workspace / "models")
    shutil.copytree(demo_workspace[0] / "datasets", workspace / "datasets")
    shutil.copytree(demo_workspace[1], config_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    log = open(tmp_path / "serve.log", "w+b")
    serve = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--port", str(port), "--no-demo",
                              "--workspace", str(workspace), "--config-dir", str(config_dir)],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers(url + "/api/health"), 90, "the web answers")
        yield serve, url, workspace, log
    finally:
        family = _family(serve)
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
        _, alive = psutil.wait_procs(family, timeout=10)
        log.close()
        assert not alive, f"left behind: {[p.cmdline() for p in alive]}"


def _family(serve) -> list:
    try:
        return psutil.Process(serve.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def cmdline(process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie not reaped yet
        return ""


def child(serve, needle: str) -> psutil.Process | None:
    return next((p for p in _family(serve) if needle in cmdline(p)), None)


def answers(url) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def status(url) -> dict:
    return requests.get(url + "/api/training/status", timeout=5).json()["run"] or {}


def start_long_run(url, demo_config) -> int:
    answer = requests.post(url + "/api/training/start", timeout=10,
                           json={"config": short_run(demo_config, epochs=400, backup_after=2,
                                                     backup_after_unit="STEP")})
    assert answer.status_code == 202, answer.text
    wait_for(lambda: (status(url).get("progress") or {}).get("global_step", 0) >= 3, 120, "training steps")
    return answer.json()["run_id"]


def test_a_killed_worker_comes_back_and_its_run_resumes(served, demo_config):
    serve, url, workspace, log = served
    run_id = start_long_run(url, demo_config)
    worker = child(serve, "webapp.cli worker")
    killed_at = time.monotonic()
    worker.send_signal(signal.SIGKILL)
    # the web keeps answering; the run is interrupted (its trainer went with the worker) with the cause
    wait_for(lambda: status(url).get("state") == "interrupted", 15, "the run shown interrupted")
    back = wait_for(lambda: (w := child(serve, "webapp.cli worker")) and w.pid != worker.pid and w, 10,
                    "a new worker")
    assert time.monotonic() - killed_at < 10
    conn = store.connect(workspace / "otweb.sqlite3")
    wait_for(lambda: store.get_run(conn, run_id)["state"] == "interrupted", 15, "the record says interrupted")
    run = store.get_run(conn, run_id)
    assert "SIGKILL" in run["reason"] and "resume" in run["reason"], run["reason"]
    assert answers(url + "/api/health") and back.is_running()
    # resume continues from the newest backup, on the worker that came back; Stop works
    assert requests.post(f"{url}/api/runs/{run_id}/resume", timeout=10).status_code == 202
    wait_for(lambda: status(url).get("state") == "running" and status(url).get("id") == run_id, 60, "resumed")
    assert requests.post(url + "/api/training/stop", timeout=10).status_code == 202
    wait_for(lambda: store.get_run(conn, run_id)["state"] == "stopped", 30, "stopped")
    conn.close()


def test_a_killed_redis_comes_back_and_the_run_is_never_shown_stopped(served, demo_config):
    serve, url, workspace, log = served
    run_id = start_long_run(url, demo_config)
    redis_server = child(serve, "redis-server")
    killed_at = time.monotonic()
    redis_server.send_signal(signal.SIGKILL)
    seen, steps = set(), []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:  # every poll during and after the outage tells the truth
        run = status(url)
        seen.add((run["state"], run.get("reconnecting")))
        steps.append((run.get("progress") or {}).get("global_step", 0))
        assert run["state"] == "running", f"shown {run['state']} while the trainer trains: {run}"
        time.sleep(0.2)
    new = wait_for(lambda: (r := child(serve, "redis-server")) and r.pid != redis_server.pid and r, 10, "Redis back")
    assert new.create_time() - (time.time() - (time.monotonic() - killed_at)) < 5
    wait_for(lambda: answers(url + "/api/health"), 10, "healthy again")
    assert steps[-1] > steps[0], "training went on"
    assert ("running", True) in seen, "the outage was shown as reconnecting"
    assert requests.post(url + "/api/training/stop", timeout=10).status_code == 202
    conn = store.connect(workspace / "otweb.sqlite3")
    wait_for(lambda: store.get_run(conn, run_id)["state"] == "stopped", 30, "stopped after the outage")
    rows = [r[0] for r in conn.execute("SELECT step FROM metrics WHERE run_id = ? ORDER BY rowid", (run_id,))]
    conn.close()
    assert rows == sorted(set(rows)), "every step's loss recorded once, in order"


def test_killing_serve_leaves_no_redis_and_a_new_start_does_not_reuse_one(served):
    serve, url, workspace, log = served
    family = _family(serve)
    assert any("redis-server" in cmdline(p) for p in family)
    serve.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, f"orphans: {[p.cmdline() for p in alive]}"


def test_a_killed_web_worker_is_replaced_and_training_goes_on(served, demo_config):
    serve, url, workspace, log = served
    run_id = start_long_run(url, demo_config)
    arbiter = child(serve, "gunicorn")
    web_worker = next(p for p in arbiter.children() if "gunicorn" in cmdline(p))
    step_before = status(url)["progress"]["global_step"]
    web_worker.send_signal(signal.SIGKILL)
    wait_for(lambda: answers(url + "/api/health"), 10, "the API answers again")
    assert status(url)["state"] == "running"
    wait_for(lambda: status(url)["progress"]["global_step"] > step_before, 30, "training went on")
    assert requests.post(url + "/api/training/stop", timeout=10).status_code == 202
    conn = store.connect(workspace / "otweb.sqlite3")
    wait_for(lambda: store.get_run(conn, run_id)["state"] == "stopped", 30, "stopped")
    seqs = [r[0] for r in conn.execute("SELECT seq FROM events WHERE run_id = ? ORDER BY seq", (run_id,))]
    conn.close()
    assert len(seqs) == len(set(seqs))


def test_a_killed_trainer_fails_its_run_and_the_next_one_trains(served, demo_config):
    serve, url, workspace, log = served
    run_id = start_long_run(url, demo_config)
    worker = child(serve, "webapp.cli worker")
    trainer = next(p for p in worker.children() if "spawn_main" in cmdline(p))
    trainer.send_signal(signal.SIGKILL)
    conn = store.connect(workspace / "otweb.sqlite3")
    wait_for(lambda: store.get_run(conn, run_id)["state"] == "failed", 15, "the run failed")
    assert "SIGKILL" in store.get_run(conn, run_id)["reason"] or "killed" in store.get_run(conn, run_id)["reason"]
    assert child(serve, "webapp.cli worker").pid == worker.pid, "the worker itself lived on"
    next_id = start_long_run(url, demo_config)
    assert requests.post(url + "/api/training/stop", timeout=10).status_code == 202
    wait_for(lambda: store.get_run(conn, next_id)["state"] == "stopped", 30, "the next run stopped")
    conn.close()
