"""`otweb serve` as a person runs it: one command starts Redis, a worker and the web; SIGTERM
(or Ctrl-C) stops all of it, a training included, and leaves no process behind."""
from __future__ import annotations

import signal

import psutil
import pytest
import requests

from support.demo import short_run
from support.polling import wait_for
from support.servers import start_otweb_serve

pytestmark = pytest.mark.slow


def test_serve_starts_everything_and_sigterm_leaves_no_orphans(demo_workspace, demo_config, tmp_path):
    workspace = tmp_path / "workspace"
    serve, url, log = start_otweb_serve(demo_workspace, tmp_path)
    try:
        wait_for(lambda: _answers(url + "/api/health"), 90, "otweb serve to answer", every=0.3)
        assert requests.get(url + "/", timeout=10).status_code == 200
        run_id = requests.post(url + "/api/training/start", timeout=10,
                               json={"config": short_run(demo_config, epochs=200)}).json()["run_id"]
        wait_for(lambda: (requests.get(url + "/api/training/status", timeout=10).json()["run"] or {}).get("progress"), 120,
                 "the demo run's progress", every=0.3)
        family = psutil.Process(serve.pid).children(recursive=True) + _embedded_redis(log)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "gunicorn" in names and "webapp.cli worker" in names and "redis-server" in names
        assert any("multiprocessing" in " ".join(p.cmdline()) for p in family), "no trainer process"
        # its worker is logged in to Redis as its own user, as a fleet worker is (issue 26 §2)
        import redis
        users = {c["user"] for c in redis.Redis(unix_socket_path=str(workspace / "redis" / "redis.sock")).client_list()}
        assert any(user.startswith("otweb-worker-") for user in users), users

        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, f"left behind: {[p.cmdline() for p in alive]}"
    finally:
        if serve.poll() is None:
            serve.kill()
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
    assert "running at http://127.0.0.1" in output
    # the run was asked to stop and save, so it is recorded as stopped, not left running
    from webapp import store
    run = store.get_run(store.connect(workspace / "otweb.sqlite3"), run_id)
    assert run["state"] in ("stopped", "interrupted"), output[-3000:]


def _embedded_redis(log) -> list:
    """redis-server daemonises (its parent is init), so find it by the socket serve printed."""
    log.seek(0)
    text = log.read().decode(errors="replace")
    socket_path = text.split("embedded Redis at unix://", 1)[1].split()[0]
    return [p for p in psutil.process_iter(["cmdline"]) if socket_path in " ".join(p.info["cmdline"] or [])]


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
