"""Real servers for end-to-end tests: the web app under gunicorn's gevent worker, as deployed
(its event stream is read with sse.py)."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from support.paths import ROOT
from support.polling import wait_for
from support.ports import free_port


@contextmanager
def serve_web(env: dict, port: int | None = None, app: str = "wsgi:app",
              workers: int = 1, timeout_s: float = 30):
    """Run gunicorn -k gevent on 127.0.0.1:port; yield its base URL; kill its process group after.

    ``env`` is added to this process's environment (OTWEB_WORKSPACE, REDIS_URL, ...)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "gunicorn", "-k", "gevent", "--no-control-socket",
           "-w", str(workers), "-b", f"127.0.0.1:{port}", app]
    log = open(Path(env.get("OTWEB_WORKSPACE", ".")) / f"gunicorn-{port}.log", "w+b")
    # a session of its own, so that killing the group also ends gunicorn's workers
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_for_app(proc, port, timeout_s, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        _kill_group(proc)
        log.close()


def _wait_for_app(proc: subprocess.Popen, port: int, timeout_s: float, log) -> None:
    # the arbiter binds the port before its worker has loaded the app: wait for an HTTP answer
    def answers() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log.read().decode(errors='replace')}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/api/health")
            conn.getresponse().read()
            return True
        finally:
            conn.close()
    wait_for(answers, timeout_s, f"gunicorn to answer on port {port}", ignore=(OSError,))


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        # SIGINT is gunicorn's quick stop (SIGTERM would wait for open SSE streams); the arbiter
        # passes it on to its workers, and the group is killed only if that hangs
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


@contextmanager
def serve_config_editor(root: Path, redis_url: str, name: str):
    """The web alone on a fresh workspace whose configs folder holds the demo preset as ``name``;
    yields (base URL, configs folder). For the editor's browser tests."""
    import shutil
    from webapp.config.library import PRESETS_DIR
    workspace, config_dir = root / "workspace", root / "configs"
    workspace.mkdir()
    config_dir.mkdir()
    shutil.copy(PRESETS_DIR / "demo.json", config_dir / f"{name}.json")
    env = {"OTWEB_WORKSPACE": str(workspace), "OTWEB_CONFIG_DIR": str(config_dir), "REDIS_URL": redis_url}
    with serve_web(env) as url:
        yield url, config_dir


def start_otweb_serve(demo_workspace, folder: Path, *args: str) -> tuple[subprocess.Popen, str, object]:
    """`otweb serve` as a person runs it (the embedded Redis, its own worker) over a copy of the demo
    in ``folder``: (the process, its URL, its log file with stdout and stderr, open for reading back)."""
    import shutil
    workspace, config_dir = folder / "workspace", folder / "configs"
    shutil.copytree(demo_workspace[0] / "models", workspace / "models")
    shutil.copytree(demo_workspace[0] / "datasets", workspace / "datasets")
    shutil.copytree(demo_workspace[1], config_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded Redis this time
    log = open(folder / "serve.log", "w+b")
    serve = subprocess.Popen([sys.executable, "-m", "webapp.cli", "serve", "--port", str(port),
                              "--workspace", str(workspace), "--config-dir", str(config_dir), *args],
                             cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return serve, f"http://127.0.0.1:{port}", log
