"""Memory and start-up of the web process (gunicorn -k gevent, the product's own command line).

RSS (and USS) of the gunicorn worker (the child of the master that serves requests):
  idle after start-up, after 100 requests to /, and with 100 SSE clients on /events (the htmx
  stream) while 20 events are published. Baseline: a bare `python -c "import flask, gevent"`
  process (kept alive on stdin), measured in the same run. Goal: web RSS < 100 MB.
Start-up: spawning gunicorn until / first answers (3 spawns; median), against spawning the bare
  baseline process until it has imported flask and gevent.

    .venv/bin/python benchmarks/bench_web_rss.py
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import time
import urllib.request

import psutil

from common import (PY, Bench, SSEClients, api, machine, maps_torch, memory, stop, table, wait_http,
                    write_results)

NAME = "bench_web_rss"
SPAWNS, REQUESTS, CLIENTS = 3, 100, 100


def baseline() -> tuple[dict, float]:
    started = time.monotonic()
    proc = subprocess.Popen([PY, "-c", "import flask, gevent, sys; print('ready', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        ready = time.monotonic() - started
        return memory(proc.pid), ready
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def spawn_web(bench: Bench) -> tuple[subprocess.Popen, str, float]:
    started = time.monotonic()
    web, url = bench.web()
    answered = wait_http(url + "/", proc=web, every=0.01)
    return web, url, answered - started


def publish(bench: Bench, count: int) -> None:
    """A few events through the worker's sink, so that the 100 streams carry rendered frames."""
    from redis import Redis

    from webapp import store
    from webapp.protocol import Event, make_event
    from webapp.eventlog import EventSink
    conn = store.connect(bench.database)
    run_id = store.create_run(conn, "rss", {})
    sink = EventSink(conn, Redis.from_url(bench.env["REDIS_URL"], decode_responses=True))
    sink.emit(run_id, make_event(Event.RUN, state="running", pid=os.getpid()))
    for step in range(1, count + 1):
        event = make_event(Event.PROGRESS, global_step=step, max_step=count, epoch=0, max_epoch=1, epoch_step=step,
                           epoch_length=count, loss=1.0 / step, lr=1e-3, speed=10.0, eta_s=1.0, smooth_loss=1.0)
        sink.metrics(run_id, [(step, 1.0 / step, 1e-3, event["time"])])
        sink.emit(run_id, event)
        time.sleep(0.05)
    conn.close()


def main() -> None:
    from webapp.trainer.demo import demo_config  # plain dicts: no torch here
    started = time.monotonic()
    base_memory, base_ready = baseline()
    with Bench() as bench:
        (bench.config_dir / "demo.json").write_text(json.dumps(demo_config(), indent=4))
        bench.redis()
        startups = []
        for index in range(SPAWNS):
            web, url, seconds = spawn_web(bench)
            startups.append(seconds)
            if index < SPAWNS - 1:
                stop(web, signal.SIGINT)
        worker_pid = psutil.Process(web.pid).children()[0].pid
        time.sleep(1.0)
        phases = {"idle after start-up": memory(worker_pid)}
        requests_started = time.monotonic()
        for _ in range(REQUESTS):
            with urllib.request.urlopen(url + "/", timeout=10) as answer:
                answer.read()
        page_ms = (time.monotonic() - requests_started) / REQUESTS * 1000
        phases[f"after {REQUESTS} requests to /"] = memory(worker_pid)
        clients = SSEClients(bench, url, "/events", CLIENTS, max_s=60)
        clients.wait_ready()
        connected = api(url, "GET", "/api/events/stats")["clients"]
        publish(bench, 20)
        time.sleep(1.0)
        phases[f"{CLIENTS} SSE clients on /events (+20 events)"] = memory(worker_pid)
        master = memory(web.pid)
        torch_loaded = maps_torch(worker_pid)
        clients.close()
        received = [len(r) for r in clients.results()["records"]]
    report(base_memory, base_ready, phases, master, startups, connected, received, torch_loaded, page_ms,
           time.monotonic() - started)


def report(base_memory, base_ready, phases, master, startups, connected, received, torch_loaded, page_ms,
           elapsed) -> None:
    base = base_memory["rss_mb"]
    rows = [["bare `python -c \"import flask, gevent\"` (baseline)", f"{base:.1f}", f"{base_memory['uss_mb']:.1f}", "1.00"]]
    rows += [[f"gunicorn worker: {name}", f"{m['rss_mb']:.1f}", f"{m['uss_mb']:.1f}", f"{m['rss_mb'] / base:.2f}"]
             for name, m in phases.items()]
    rows.append(["gunicorn master (arbiter)", f"{master['rss_mb']:.1f}", f"{master['uss_mb']:.1f}",
                 f"{master['rss_mb'] / base:.2f}"])
    startup = statistics.median(startups)
    print(f"\n## {NAME}\n")
    print(table(["process", "RSS MB", "USS MB", "RSS / baseline"], rows))
    print(f"\nstart-up: spawn -> first answer of / : median {startup:.2f} s of {SPAWNS} "
          f"({', '.join(f'{s:.2f}' for s in startups)}); bare python+flask+gevent import {base_ready:.2f} s "
          f"(ratio {startup / base_ready:.1f}x)")
    print(f"broker clients at the peak: {connected}; events received per client: min {min(received)}, "
          f"max {max(received)}; libtorch mapped in the web worker: {torch_loaded}; "
          f"GET / (sequential, new connection each): {page_ms:.1f} ms mean")
    peak = max(m["rss_mb"] for m in phases.values())
    print(f"goal web RSS < 100 MB: peak {peak:.1f} MB; load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {
        "benchmark": NAME, "machine": machine(), "baseline": base_memory, "baseline_ready_s": base_ready,
        "web_worker": phases, "web_master": master, "startup_s": startups, "startup_median_s": startup,
        "broker_clients": connected, "events_received_per_client": received, "torch_in_web": torch_loaded,
        "get_dashboard_mean_ms": page_ms,
        "goal": "web worker RSS < 100 MB", "met": peak < 100, "loadavg_at_end": os.getloadavg(),
        "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
