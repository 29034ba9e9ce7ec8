"""Real servers for end-to-end tests: the web app under gunicorn's gevent worker, as deployed,
and a client that reads its event stream frame by frame."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str = "condition", every: float = 0.1):
    """predicate()'s first true value, polled every ``every`` s; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not in {timeout} s: {what}")


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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log.read().decode(errors='replace')}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/api/health")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise TimeoutError(f"gunicorn did not answer on port {port} within {timeout_s} s")


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


class SSEReader:
    """Reads an event stream frame by frame (requests hands chunks on as they arrive)."""

    def __init__(self, base_url: str, path: str = "/api/events", headers=None):
        self.response = requests.get(base_url + path, headers=headers, stream=True, timeout=(5, 10))
        self._chunks = self.response.iter_content(chunk_size=None)
        self._buffer = b""

    def frame(self) -> dict:
        while b"\n\n" not in self._buffer:
            self._buffer += next(self._chunks)
        raw, self._buffer = self._buffer.split(b"\n\n", 1)
        frame = {"data": [], "comments": []}
        for line in raw.decode().split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                frame["comments"].append(value)
            elif name == "data":
                frame["data"].append(value)
            else:
                frame[name] = value
        frame["data"] = "\n".join(frame["data"]) if frame["data"] else None
        return frame

    def frames_until_id(self, seq: int, timeout_s: float = 10) -> list[dict]:
        """Every frame that is not a heartbeat, up to the one with id == seq."""
        frames, deadline = [], time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frame = self.frame()
            if frame["comments"] or "retry" in frame:
                continue
            frames.append(frame)
            if frame.get("id") == str(seq):
                return frames
        raise AssertionError(f"no frame with id {seq} within {timeout_s} s; got {frames}")

    def close(self) -> None:
        self.response.close()


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
