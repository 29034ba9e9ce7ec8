"""Faults under `otweb serve`: how long from a SIGKILL to the service being whole again, and how
many events are lost across it.

`otweb serve` (embedded Redis, a worker, the web) on the demo; a long demo run trains. Each fault
is a SIGKILL of one part, REPEAT times, in a fresh run each time:
- worker: whole = a new worker process whose heartbeat is in Redis and the API answering; the run
  it held is recorded interrupted (its trainer went with it), and a resumed run trains again;
- redis: whole = /api/health answers 200 again (Redis back, the worker's heartbeat there);
- web: whole = the API answers again (gunicorn's arbiter replaces its worker);
- trainer: whole = its run recorded failed and the worker ready for the next run.
Events lost: for redis and web, the training steps missing from the recorded loss rows between
the first and the last recorded step of the run (every step writes one).
Baseline, same run: how long `otweb serve` took to bring the same part up at its first start.
Goal: whole again in < 5 s for the worker and Redis; no event lost.

    .venv/bin/python benchmarks/bench_faults.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PY, ROOT, Bench, build_demo, free_port, machine, table, wait_demo, write_results  # noqa: E402
from support.polling import wait_for  # noqa: E402


def family(serve) -> list:
    return psutil.Process(serve.pid).children(recursive=True)


def cmdline(process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie waiting to be reaped
        return ""


def part(serve, needle: str):
    return next((p for p in family(serve) if needle in cmdline(p)), None)


def until(predicate, timeout: float = 60):
    """Polled every 20 ms: the resolution of the recovery times measured."""
    return wait_for(predicate, timeout, every=0.02)


def ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


class Served:
    def __init__(self, bench: Bench, demo_config: dict):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in bench.env.items() if k != "REDIS_URL"}
        started = time.monotonic()
        self.proc = subprocess.Popen([PY, "-m", "webapp.cli", "serve", "--port", str(self.port), "--no-demo"],
                                     cwd=ROOT, env=env, stdout=open(bench.tmp / "serve.log", "ab"),
                                     stderr=subprocess.STDOUT)
        bench.callback(self.stop)
        until(lambda: ok(self.url + "/api/health"), 120)
        self.cold_start_s = time.monotonic() - started
        self.config = {**demo_config, "epochs": 1000, "sample_after_unit": "NEVER", "backup_after": 5,
                       "backup_after_unit": "STEP", "rolling_backup": True}
        self.database = bench.database
        self.redis = redis.Redis(unix_socket_path=str(bench.workspace / "redis" / "redis.sock"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    def status(self) -> dict:
        return requests.get(self.url + "/api/training/status", timeout=5).json()["run"] or {}

    def start_run(self) -> int:
        run_id = requests.post(self.url + "/api/training/start", json={"config": self.config}, timeout=10).json()["run_id"]
        until(lambda: (self.status().get("progress") or {}).get("global_step", 0) >= 8, 180)
        return run_id

    def stop_run(self, run_id: int) -> None:
        requests.post(self.url + "/api/training/stop", json={"run_id": run_id}, timeout=10)
        until(lambda: self.state(run_id) not in ("running", "queued"), 60)

    def state(self, run_id: int) -> str:
        return requests.get(f"{self.url}/api/runs/{run_id}", timeout=5).json()["run"]["state"]

    def lost_steps(self, run_id: int) -> int:
        import sqlite3
        conn = sqlite3.connect(self.database)
        steps = sorted({r[0] for r in conn.execute("SELECT step FROM metrics WHERE run_id = ?", (run_id,))})
        conn.close()
        return (steps[-1] - steps[0] + 1 - len(steps)) if steps else 0


def fault_worker(served: Served) -> dict:
    run_id = served.start_run()
    old = part(served.proc, "webapp.cli worker")
    killed = time.monotonic()
    old.send_signal(signal.SIGKILL)
    until(lambda: (w := part(served.proc, "webapp.cli worker")) and w.pid != old.pid
          and any(served.redis.scan_iter("otweb:w:*:beat")) and ok(served.url + "/api/health"))
    whole = time.monotonic() - killed
    until(lambda: served.state(run_id) == "interrupted", 30)
    requests.post(f"{served.url}/api/runs/{run_id}/resume", timeout=10)
    until(lambda: served.state(run_id) == "running", 60)
    served.stop_run(run_id)
    return {"whole_s": whole, "lost_steps": None}


def fault_redis(served: Served) -> dict:
    run_id = served.start_run()
    old = part(served.proc, "redis-server")
    killed = time.monotonic()
    old.send_signal(signal.SIGKILL)
    time.sleep(0.3)  # let the web see it gone
    until(lambda: ok(served.url + "/api/health"))
    whole = time.monotonic() - killed
    time.sleep(1.0)
    served.stop_run(run_id)
    return {"whole_s": whole, "lost_steps": served.lost_steps(run_id)}


def fault_web(served: Served) -> dict:
    run_id = served.start_run()
    arbiter = part(served.proc, "gunicorn")
    old = next(p for p in arbiter.children() if "gunicorn" in cmdline(p))
    killed = time.monotonic()
    old.send_signal(signal.SIGKILL)
    time.sleep(0.05)
    until(lambda: ok(served.url + "/api/health"))
    whole = time.monotonic() - killed
    served.stop_run(run_id)
    return {"whole_s": whole, "lost_steps": served.lost_steps(run_id)}


def fault_trainer(served: Served) -> dict:
    run_id = served.start_run()
    worker = part(served.proc, "webapp.cli worker")
    trainer = next(p for p in worker.children() if "spawn_main" in cmdline(p))
    killed = time.monotonic()
    trainer.send_signal(signal.SIGKILL)
    until(lambda: served.state(run_id) == "failed")
    whole = time.monotonic() - killed
    return {"whole_s": whole, "lost_steps": None}


FAULTS = {"worker": fault_worker, "redis": fault_redis, "web": fault_web, "trainer": fault_trainer}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {}
    with Bench() as bench:
        wait_demo(bench, build_demo(bench))
        demo_config = json.loads((bench.config_dir / "demo.json").read_text())
        served = Served(bench, demo_config)
        for name, fault in FAULTS.items():
            results[name] = [fault(served) for _ in range(args.repeat)]
            print(name, results[name], flush=True)
        cold = served.cold_start_s
    rows = []
    for name, runs in results.items():
        wholes = [r["whole_s"] for r in runs]
        lost = [r["lost_steps"] for r in runs if r["lost_steps"] is not None]
        rows.append([name, f"{statistics.median(wholes):.2f} s", f"{max(wholes):.2f} s",
                     str(sum(lost)) if lost else "–"])
    print(table(["fault", "whole again (median)", "worst", "steps lost"], rows))
    print(f"baseline: otweb serve's own first start to a healthy API: {cold:.2f} s")
    path = write_results("bench_faults", {"machine": machine(), "repeat": args.repeat, "cold_start_s": cold,
                                          "results": results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
