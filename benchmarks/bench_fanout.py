"""Fan-out: 1,000 SSE clients on ONE gunicorn gevent worker (the product's own command line).

Events are appended and published through webapp.eventlog.EventSink (a metrics row, then
``emit``, as the worker's bridge does) at 20 events/s for 10 s, to 1,000 clients held by one asyncio
process of their own (benchmarks/sse_clients.py --light: raw HTTP/1.0 sockets, each frame's id and
receive time only), on loopback. Three phases, each with a fresh server and the same clients:

  baseline    a trivial gevent SSE app under the same gunicorn flags (``baseline_app`` below): one
              Redis subscription, each message passed on as one frame to gevent queues, no Flask
              routing per event, no SQLite, no templates: the floor for this machine.
  /api/events the product's JSON stream (what scripts use).
  /events     the product's HTML stream (what pages use; htmx-ext-sse swaps its partials).

For each: clients connected (and the broker's count), events each client received against the
events published (every client must get every event), delivery latency (receive time in the client
process minus the event's ``time``, set before the SQLite append; same clock) p50/p99/max, the web
worker's RSS (idle, peak with 1,000 streams) against the baseline's worker and a bare
``python -c "import flask, gevent"`` process, the worker's CPU, the machine's foreign load (CPU used
by processes that are not ours), and the broker's counters (``/api/events/stats``): ``renders``
(HTML renders) and ``framings`` (events framed into SSE bytes) must each equal the events
published, not events x clients. ``--web-nofile 1024`` starts the web with systemd's default soft
open-file limit, to check that the product raises it (1,000 streams need more than 1,024 files).

    .venv/bin/python benchmarks/bench_fanout.py [--clients 1000] [--seconds 10]

Goal (issue #10, 3): every client gets every event; p99 < 250 ms; web worker RSS < 150 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time

NAME = "bench_fanout"
RATE = 20
MB = 1024 * 1024
GOAL_P99_S, GOAL_RSS_MB = 0.25, 150
PHASES = {"baseline": ("baseline", "/events"), "json": ("product", "/api/events"), "html": ("product", "/events")}
DRAIN_S = 3.0  # after the web has the last event, for its frames to reach every client


# -- the baseline: a trivial gevent SSE app (loaded by gunicorn from this file) ------------------

def baseline_app():
    """Flask + gevent, one Redis subscription, each published message passed on as one frame."""
    import gevent
    import gevent.event
    import gevent.queue
    import redis
    from flask import Flask, Response, jsonify

    from webapp.settings import EVENTS_CHANNEL

    app = Flask("baseline")
    clients: set = set()
    subscribed = gevent.event.Event()
    listener: list = []

    def listen() -> None:
        pubsub = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True).pubsub()
        pubsub.subscribe(EVENTS_CHANNEL)
        for message in pubsub.listen():
            if message["type"] == "subscribe":
                subscribed.set()
            elif message["type"] == "message":
                event = json.loads(message["data"])
                frame = f"event: {event['event']}\ndata: {message['data']}\nid: {event['seq']}\n\n"
                for queue in list(clients):
                    queue.put_nowait(frame)

    @app.get("/api/health")
    def health():
        return jsonify(ok=True)

    @app.get("/api/events/stats")
    def stats():
        return jsonify(clients=len(clients), renders=None)

    @app.get("/events")
    @app.get("/api/events")
    def events():
        if not listener:
            listener.append(gevent.spawn(listen))
        subscribed.wait(5)
        queue = gevent.queue.Queue()
        clients.add(queue)

        def body():
            try:
                yield "retry: 2000\n\n"
                while True:
                    yield queue.get()
            finally:
                clients.discard(queue)
        return Response(body(), content_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


# -- the benchmark -------------------------------------------------------------------------------

def bare_process_rss() -> float:
    """RSS of a bare `python -c "import flask, gevent"` (as bench_web_rss's baseline), in MB."""
    import psutil
    proc = subprocess.Popen([sys.executable, "-c", "import flask, gevent, sys; print('ready', flush=True); "
                             "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        return psutil.Process(proc.pid).memory_info().rss / MB
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def web_limits(pid: int) -> dict:
    """The worker's open-file limit (what 1,000 sockets need) and gunicorn's worker_connections."""
    import psutil
    soft, hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    cmdline = psutil.Process(pid).cmdline()
    connections = cmdline[cmdline.index("--worker-connections") + 1] if "--worker-connections" in cmdline else None
    return {"nofile_soft": soft, "nofile_hard": hard, "worker_connections": connections}


def cpu_s(processes) -> float:
    import psutil
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def phase(bench, label: str, path: str, clients_n: int, seconds: float, history: int) -> dict:
    import psutil
    from redis import Redis

    from common import RssSampler, SSEClients, api, pct, publish_progress, stop, wait_http
    from cpu import busy_cpu_s
    from webapp import store
    from webapp.eventlog import EventSink

    web, url = bench.web_app("bench_fanout:baseline_app()") if label == "baseline" else bench.web()
    try:
        wait_http(url + "/api/health", proc=web)
        worker = psutil.Process(web.pid).children()[0]
        time.sleep(0.5)
        idle_rss = worker.memory_info().rss
        conn = store.connect(bench.database)
        store.init_schema(conn)
        run_id = store.create_run(conn, f"fanout {label} {path}", {})
        sink = EventSink(conn, Redis.from_url(bench.env["REDIS_URL"], decode_responses=True))
        if history:
            sink.metrics(run_id, [(step, 1.0 / step, 1e-3, time.time()) for step in range(1, history + 1)])
        sampler = RssSampler(worker.pid)
        connect_started = time.monotonic()
        clients = SSEClients(bench, url, path, clients_n, "--light", max_s=seconds + 90)
        clients.wait_ready(timeout=90)
        connect_s = time.monotonic() - connect_started
        before = api(url, "GET", "/api/events/stats")
        limits = web_limits(worker.pid)
        emitted, count = {}, int(RATE * seconds)
        ours = [psutil.Process(pid) for pid in (web.pid, worker.pid, clients.proc.pid, bench.redis_pid, os.getpid())]
        machine0, ours0 = busy_cpu_s(), cpu_s(ours)
        cpu0, start = sum(worker.cpu_times()[:2]), time.monotonic()
        for i in range(1, count + 1):
            time.sleep(max(0.0, start + i / RATE - time.monotonic()))
            step = history + i
            numbered = publish_progress(sink, run_id, step, history + count, RATE)
            emitted[numbered["seq"]] = numbered["time"]
        publish_s = time.monotonic() - start
        deadline, last = time.monotonic() + 10, max(emitted)  # let the last frames arrive (bounded)
        while time.monotonic() < deadline and api(url, "GET", "/api/events/stats").get("last_seq", last) < last:
            time.sleep(0.2)
        time.sleep(DRAIN_S)
        web_cpu, window = sum(worker.cpu_times()[:2]) - cpu0, time.monotonic() - start
        foreign = max(0.0, (busy_cpu_s() - machine0) - (cpu_s(ours) - ours0)) / (window * (os.cpu_count() or 1))
        after = api(url, "GET", "/api/events/stats")
        peak_rss = sampler.stop()
        clients.close()
        result = clients.results()
        conn.close()
    finally:
        stop(web, signal.SIGINT)
    records = result["records"]
    wanted = set(emitted)
    per_client = [len({seq for seq, _ in r if seq in wanted}) for r in records]
    latencies = [received - emitted[seq] for r in records for seq, received in r if seq in emitted]
    renders = None if after.get("renders") is None else after["renders"] - before["renders"]
    framings = None if after.get("framings") is None else after["framings"] - before["framings"]
    # per event: when its first and its last client got it (the fan-out's own spread), and the p99
    # per second of publishing (a backlog grows; noise comes and goes)
    by_event: dict = {}
    for r in records:
        for seq, received in r:
            if seq in emitted:
                by_event.setdefault(seq, []).append(received - emitted[seq])
    first = [min(v) for v in by_event.values()]
    spread = [max(v) - min(v) for v in by_event.values()]
    seqs = sorted(emitted)
    by_second = [pct([x for seq in seqs[i:i + RATE] for x in by_event.get(seq, [])], 99)
                 for i in range(0, len(seqs), RATE)]
    return {"label": label, "path": path, "history": history, "clients": clients_n,
            "connected": result["connected"], "broker_clients": before["clients"], "client_errors": result["errors"],
            "connect_s": connect_s, "events": count, "publish_s": publish_s,
            "received_min": min(per_client, default=0), "received_max": max(per_client, default=0),
            "clients_with_every_event": sum(n == count for n in per_client),
            "deliveries": len(latencies), "expected": count * clients_n,
            "p50": pct(latencies, 50), "p99": pct(latencies, 99), "max": max(latencies, default=None),
            "over_250ms": sum(v > GOAL_P99_S for v in latencies) / max(1, len(latencies)),
            "idle_rss_mb": idle_rss / MB, "peak_rss_mb": peak_rss / MB,
            "web_cpu_percent": 100 * web_cpu / window, "clients_cpu_s": result["cpu_s"],
            "foreign_load_percent": 100 * foreign,
            "first_client_p50": pct(first, 50), "spread_p50": pct(spread, 50), "spread_max": max(spread, default=None),
            "p99_by_second": by_second,
            "renders": renders, "framings": framings, "web_limits": limits}


def main() -> None:
    from common import Bench, machine, ms, table, write_results
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--history", type=int, default=0, help="loss values the run holds before the events")
    parser.add_argument("--only", choices=PHASES, action="append", help="run only these phases")
    parser.add_argument("--web-nofile", type=int, help="start the web with this soft open-file limit (e.g. 1024, "
                        "systemd's default) instead of the hard limit; the clients raise theirs anyway")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # inherited by the web and the clients
    wanted = args.web_nofile or hard
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    started = time.monotonic()
    bare = bare_process_rss()
    phases = [PHASES[name] for name in PHASES if not args.only or name in args.only]
    with Bench() as bench:
        bench.redis()
        runs = [phase(bench, label, path, args.clients, args.seconds, args.history) for label, path in phases]
    elapsed = time.monotonic() - started
    base = next((r for r in runs if r["label"] == "baseline"), None)

    def ratio(value, key):
        return f"{value / base[key]:.2f}" if base and base[key] else "-"

    print(f"\n## {NAME}\n\n{args.clients} SSE clients (one asyncio process, loopback) on one gunicorn gevent worker; "
          f"EventSink at {RATE} events/s for {args.seconds:g} s; run's loss history {args.history:,}\n")
    print(table(["server", "stream", "connected", "events/client (min-max of published)", "every event",
                 "p50 ms", "p99 ms", "max ms", "p99 / baseline", "> 250 ms", "worker RSS idle → peak MB",
                 "peak RSS / baseline", "worker CPU %", "HTML renders / framings", "foreign load %"],
                [[r["label"], r["path"], f"{r['connected']} (broker {r['broker_clients']})",
                  f"{r['received_min']}-{r['received_max']} of {r['events']}",
                  f"{r['clients_with_every_event']}/{r['clients']}", ms(r["p50"]), ms(r["p99"]), ms(r["max"]),
                  ratio(r["p99"], "p99"), f"{100 * r['over_250ms']:.1f}%",
                  f"{r['idle_rss_mb']:.1f} → {r['peak_rss_mb']:.1f}", ratio(r["peak_rss_mb"], "peak_rss_mb"),
                  f"{r['web_cpu_percent']:.0f}",
                  "-" if r["renders"] is None else f"{r['renders']} / {r['framings']} for {r['events']} events",
                  f"{r['foreign_load_percent']:.0f}"]
                 for r in runs]))
    print("\nfan-out timing: when an event's first client got it, the spread from its first to its last "
          "client, and p99 per second of publishing (a backlog grows; noise comes and goes):\n")
    print(table(["server", "stream", "first client p50 ms", "first→last client p50 ms", "max ms", "p99 ms by second"],
                [[r["label"], r["path"], ms(r["first_client_p50"]), ms(r["spread_p50"]), ms(r["spread_max"]),
                  " ".join(ms(x) for x in r["p99_by_second"])] for r in runs]))
    product = [r for r in runs if r["label"] == "product"]
    every = all(r["clients_with_every_event"] == r["clients"] == r["connected"] for r in product)
    worst_p99 = max((r["p99"] or 1e9 for r in product), default=None)
    peak = max((r["peak_rss_mb"] for r in product), default=None)
    renders_ok = all(r["renders"] == r["events"] for r in product if r["path"] == "/events") and \
        all(r["framings"] == r["events"] for r in product)
    limits = product[0]["web_limits"] if product else {}
    print(f"\nbare `python -c \"import flask, gevent\"`: {bare:.1f} MB RSS; web worker limits: {limits}")
    met = bool(product) and every and worst_p99 < GOAL_P99_S and peak < GOAL_RSS_MB and renders_ok
    print(f"goal: every client every event {'yes' if every else 'NO'}; p99 < 250 ms: worst {ms(worst_p99)} ms; "
          f"RSS < 150 MB: peak {peak:.1f} MB; one HTML render and one framing per event (not per client): "
          f"{'yes' if renders_ok else 'NO'} "
          f"-> {'met' if met else 'NOT met'}; load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {
        "benchmark": NAME, "machine": machine(), "clients": args.clients, "rate_per_s": RATE,
        "seconds": args.seconds, "history": args.history, "web_nofile_given": args.web_nofile,
        "bare_flask_gevent_rss_mb": bare, "phases": runs,
        "goal": "every client every event; p99 < 250 ms; web worker RSS < 150 MB; one HTML render (and one framing) "
                "per event, not per client",
        "met": met, "loadavg_at_end": os.getloadavg(), "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
