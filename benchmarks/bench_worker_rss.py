"""Memory and start-up of the worker process (`otweb worker`, started as `otweb serve` starts it:
`python -m webapp.cli worker`), idle with no run, and again after it has hosted one.

RSS and USS (psutil) of:
  - the baseline: a bare `python -c` process kept alive on stdin, measured in the same run;
  - import probes, each a process of its own kept alive the same way: `import redis` (the worker's
    one client library) and `import webapp.cli, webapp.worker.loop` (everything `otweb worker` loads
    before it serves), with the heavy libraries each finds in sys.modules (torch, diffusers,
    transformers, numpy, PIL, safetensors: only the trainer process should load them);
  - the worker: idle 2 s after it is ready (its heartbeat is in Redis), sampled at 10 Hz for 2 s;
    then during and after one short demo run it hosts (1 epoch of 6 steps, no samples; the trainer
    is a spawned process of its own), once the trainer process is gone. libtorch mapped into the
    worker is checked in /proc/<pid>/maps each time.
Start-up: spawn -> heartbeat key in Redis, against the bare baseline's spawn -> ready.
Goal: worker idle RSS < 150 MB without a trainer process.

    .venv/bin/python benchmarks/bench_worker_rss.py
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import psutil

from common import MB, PY, Bench, build_demo, machine, maps_torch, memory, table, wait_demo, write_results
from support.polling import wait_for

NAME = "bench_worker_rss"
HEAVY = ("torch", "diffusers", "transformers", "numpy", "PIL", "safetensors", "flask", "jinja2", "gevent")


def probe(imports: str) -> dict:
    """A process that runs ``imports``, reports the heavy packages it loaded, and waits on stdin."""
    code = (f"{imports}\nimport json, sys\nloaded = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
            "print('ready', json.dumps(loaded), flush=True)\nsys.stdin.read()")
    started = time.monotonic()
    proc = subprocess.Popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        line = proc.stdout.readline()
        ready = time.monotonic() - started
        loaded = json.loads(line.split(" ", 1)[1]) if line.startswith("ready") else ["?"]
        return {**memory(proc.pid), "ready_s": ready, "heavy": loaded}
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


class Sampler:
    """RSS of one process every 0.1 s in a thread: the peak and the last value."""

    def __init__(self, pid: int):
        self.process, self.peak, self.last = psutil.Process(pid), 0.0, 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                self.last = self.process.memory_info().rss / MB
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)
            self.done.wait(0.1)

    def stop(self) -> float:
        self.done.set()
        self.thread.join(timeout=5)
        return self.peak


def wait_ready(bench: Bench, worker: subprocess.Popen, redis_client, timeout: float = 30) -> float:
    from webapp.settings import heartbeat_key
    key = heartbeat_key(bench.env["OTWEB_WORKER_NAME"])

    def beating():
        if worker.poll() is not None:
            raise RuntimeError("the worker exited:\n" + bench.log_tail("worker"))
        return redis_client.exists(key) and time.monotonic()
    try:
        return wait_for(beating, timeout, "the worker's first heartbeat", every=0.01)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{bench.log_tail('worker')}") from None


def host_one_run(bench: Bench, redis_client, worker_pid: int) -> dict:
    """Queue a short demo run as the web would (a row in SQLite and a nudge), wait for its end."""
    from webapp import store
    from webapp.eventlog import NUDGE_FIELD
    from webapp.settings import NUDGE_STREAM
    config = json.loads((bench.config_dir / "demo.json").read_text())
    config.update(epochs=1, sample_after=0, sample_after_unit="NEVER", tensorboard=False)
    conn = store.connect(bench.database)
    run_id = store.create_run(conn, "demo", config)
    redis_client.xadd(NUDGE_STREAM, {NUDGE_FIELD: "1"})
    sampler, trainer_peak = Sampler(worker_pid), 0.0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            for child in psutil.Process(worker_pid).children():
                try:
                    trainer_peak = max(trainer_peak, child.memory_info().rss / MB)
                except psutil.Error:
                    pass
            run = store.get_run(conn, run_id)
            if run["state"] not in ("queued", "running"):
                break
            time.sleep(0.2)
        else:
            raise TimeoutError("the demo run did not end within 120 s:\n" + bench.log_tail("worker"))
    finally:
        peak = sampler.stop()
        conn.close()
    deadline = time.monotonic() + 10
    while psutil.Process(worker_pid).children() and time.monotonic() < deadline:
        time.sleep(0.1)
    left = []
    for child in psutil.Process(worker_pid).children():
        try:  # multiprocessing's resource tracker (spawn context) stays, by design: small, idle
            left.append({"cmdline": " ".join(child.cmdline())[-120:], "rss_mb": child.memory_info().rss / MB})
        except psutil.Error:
            pass
    return {"state": run["state"], "worker_peak_rss_mb": peak, "trainer_peak_rss_mb": trainer_peak,
            "children_left": left}


def main() -> None:
    from redis import Redis
    started = time.monotonic()
    base = probe("pass")
    probes = {"import redis": probe("import redis"),
              "import webapp.cli, webapp.worker.loop (what `otweb worker` loads)":
                  probe("import webapp.cli, webapp.worker.loop, webapp.worker.supervisor")}
    with Bench() as bench:
        demo = build_demo(bench)  # in the background: only the after-a-run phase needs it
        bench.redis()
        client = Redis.from_url(bench.env["REDIS_URL"])
        spawned = time.monotonic()
        worker = bench.worker()
        startup = wait_ready(bench, worker, client) - spawned
        time.sleep(2.0)
        sampler = Sampler(worker.pid)
        time.sleep(2.0)
        idle_peak = sampler.stop()
        phases = {"idle, no run (2 s after ready)": {**memory(worker.pid), "peak_rss_mb": idle_peak,
                                                     "threads": psutil.Process(worker.pid).num_threads(),
                                                     "torch_mapped": maps_torch(worker.pid)}}
        wait_demo(bench, demo)
        run = host_one_run(bench, client, worker.pid)
        time.sleep(1.0)
        phases["idle after hosting one demo run (trainer gone)"] = {
            **memory(worker.pid), "peak_rss_mb": run["worker_peak_rss_mb"],
            "threads": psutil.Process(worker.pid).num_threads(), "torch_mapped": maps_torch(worker.pid)}
    report(base, probes, phases, startup, run, time.monotonic() - started)


def report(base, probes, phases, startup, run, elapsed) -> None:
    b = base["rss_mb"]
    rows = [["bare `python -c` (baseline)", f"{b:.1f}", f"{base['uss_mb']:.1f}", "–", "1.00", "–"]]
    rows += [[f"probe: `{name}`", f"{p['rss_mb']:.1f}", f"{p['uss_mb']:.1f}", "–", f"{p['rss_mb'] / b:.2f}",
              ", ".join(p["heavy"]) or "none"] for name, p in probes.items()]
    rows += [[f"worker: {name}", f"{m['rss_mb']:.1f}", f"{m['uss_mb']:.1f}", f"{m['peak_rss_mb']:.1f}",
              f"{m['rss_mb'] / b:.2f}", "libtorch mapped" if m["torch_mapped"] else "no libtorch"]
             for name, m in phases.items()]
    print(f"\n## {NAME}\n")
    print(table(["process", "RSS MB", "USS MB", "peak RSS MB", "RSS / baseline", "libraries of note loaded"], rows))
    idle = phases["idle, no run (2 s after ready)"]["rss_mb"]
    after = phases["idle after hosting one demo run (trainer gone)"]["rss_mb"]
    print(f"\nstart-up: spawn -> heartbeat in Redis {startup:.2f} s; bare python {base['ready_s']:.2f} s "
          f"(ratio {startup / base['ready_s']:.1f}x). Demo run: {run['state']}, trainer process peak "
          f"{run['trainer_peak_rss_mb']:.0f} MB RSS; child processes left after it: "
          + (", ".join(f"{c['cmdline'][-60:]!r} ({c['rss_mb']:.0f} MB)" for c in run["children_left"]) or "none"))
    print(f"goal worker idle RSS < 150 MB: {idle:.1f} MB idle, {after:.1f} MB after a run "
          f"({'met' if max(idle, after) < 150 else 'MISSED'}); load average {os.getloadavg()[0]:.1f}; "
          f"took {elapsed:.0f} s")
    path = write_results(NAME, {"benchmark": NAME, "machine": machine(), "baseline": base, "probes": probes,
                                "worker": phases, "startup_s": startup, "run": run,
                                "goal": "worker idle RSS < 150 MB without a trainer process",
                                "met": max(idle, after) < 150, "loadavg_at_end": os.getloadavg(),
                                "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
