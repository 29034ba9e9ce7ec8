"""The fleet's event path, trainer callback -> browser: 4 simulated workers (processes of their
own) each emit 20 progress events/s, as the bridge hands them on (a loss row, then the progress
event), through the worker's real sink (webapp.worker.stream_sink.StreamSink: numbered XADD to the
event stream) -> the control plane's recorder (in the gunicorn + gevent web: SQLite, XACK,
publish) -> each web process's broker -> 200 SSE viewers (one asyncio process, raw HTTP).

Latency = a frame's receive time minus the event's own `time`, stamped with time.time() in the
worker process at the callback (same machine, same clock); per viewer the first frame of each
event counts. The worker's bridge would hold progress up to 80 ms for display (by design, see
bench_event_latency); here the sink is fed directly, so this is the transport's own latency.

Baseline, same run, same 200 viewers and 80 events/s: the control plane's direct path
(eventlog.EventSink in this process: SQLite append, then PUBLISH), as the web records its own
events. Real redis-server (tests/support/fleet.py's, on TCP, appendonly on, as the README's fleet runs it).
The web runs with OTWEB_HEARTBEAT_TTL_S=3600: the simulated workers send no heartbeats.

    .venv/bin/python benchmarks/bench_fleet_events.py [--viewers 200] [--seconds 10] [--streams /api/events,/events]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import psutil

from common import PY, ROOT, Bench, SSEClients, machine, ms, pct, publish_progress, table, wait_http, write_results


NAME = "bench_fleet_events"
WORKERS, RATE = 4, 20          # the load: 4 workers x 20 events/s
GOAL_P99_S = 0.1


def producer(redis_url: str, run_id: int, source: str, run_dir: str, start_at: float, seconds: float,
             rate: float) -> None:
    """One simulated worker: what its bridge emits for a trainer at `rate` progress callbacks/s."""
    import redis

    from webapp.protocol import Event, make_event
    from webapp.settings import WORKERS_KEY, worker_stream
    from webapp.worker.stream_sink import StreamSink
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.sadd(WORKERS_KEY, f"sim-{source}")  # a worker without a token joins the fleet itself
    sink = StreamSink(client, os.path.join(run_dir, "spool"), worker_stream(f"sim-{source}"))
    sink.bind(run_id, source, run_dir)
    count = int(seconds * rate)
    time.sleep(max(0.0, start_at - time.time()))
    for step in range(1, count + 1):
        time.sleep(max(0.0, start_at + step / rate - time.time()))
        event = make_event(Event.PROGRESS, global_step=step, max_step=count, epoch=0, max_epoch=1, epoch_step=step,
                           epoch_length=count, loss=1.0 / step, lr=1e-3, speed=float(rate),
                           eta_s=(count - step) / rate, smooth_loss=1.0 / step)
        sink.metrics(run_id, [(step, 1.0 / step, 1e-3, event["time"])])
        sink.emit(run_id, event)
    print(f"sent {count} spooled {len(sink.spool)}", flush=True)


def make_runs(conn, n: int, tag: str) -> list[tuple[int, str]]:
    """n runs recorded as running on simulated workers: the recorder takes only what an
    assignment the control plane made sends."""
    from webapp import store
    runs = []
    for i in range(n):
        run_id = store.create_run(conn, f"{tag}-{i}", {})
        source = f"{tag}{run_id}"
        store.assignments.assign(conn, run_id, f"sim-{source}", source)
        runs.append((run_id, source))
    return runs


def cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14, 15; in clock ticks)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fleet_phase(bench: Bench, url: str, conn, path: str, viewers: int, seconds: float) -> dict:
    runs = make_runs(conn, WORKERS, "fleet")
    clients = SSEClients(bench, url, path, viewers, "--light", max_s=seconds + 60)
    clients.wait_ready(timeout=60)
    web_cpu = cpu_s(bench.web_worker)
    start_at = time.time() + 1.0
    # the workers' callbacks spread over each 50 ms, as unsynchronised workers' are (and as the
    # direct phase sends them): not 4 at once, which the recorder would publish as one message
    procs = [subprocess.Popen([PY, __file__, "--producer", bench.env["REDIS_URL"], str(run_id), source,
                               str(bench.tmp / f"sim-{run_id}"), str(start_at + i / WORKERS / RATE), str(seconds),
                               str(RATE)], cwd=ROOT, env=bench.env, stdout=subprocess.PIPE, text=True)
             for i, (run_id, source) in enumerate(runs)]
    outputs = [proc.communicate(timeout=seconds + 60)[0].strip() for proc in procs]
    time.sleep(1.5)  # the last frames
    web_cpu = cpu_s(bench.web_worker) - web_cpu
    clients.close()
    return {**measure(conn, clients.results(), [r for r, _ in runs], path, viewers, "fleet", outputs),
            "web_worker_cpu_s": web_cpu}


def direct_phase(bench: Bench, url: str, conn, path: str, viewers: int, seconds: float) -> dict:
    from redis import Redis

    from webapp.eventlog import EventSink
    runs = [run_id for run_id, _ in make_runs(conn, WORKERS, "direct")]
    sink = EventSink(conn, Redis.from_url(bench.env["REDIS_URL"], decode_responses=True))
    clients = SSEClients(bench, url, path, viewers, "--light", max_s=seconds + 60)
    clients.wait_ready(timeout=60)
    web_cpu = cpu_s(bench.web_worker)
    count, start = int(seconds * RATE), time.time() + 1.0
    for step in range(1, count + 1):
        for i, run_id in enumerate(runs):  # the 4 runs' callbacks spread over each 50 ms
            time.sleep(max(0.0, start + (step - 1 + i / WORKERS) / RATE - time.time()))
            publish_progress(sink, run_id, step, count, RATE)
    time.sleep(1.5)
    web_cpu = cpu_s(bench.web_worker) - web_cpu
    clients.close()
    return {**measure(conn, clients.results(), runs, path, viewers, "direct (EventSink)", []),
            "web_worker_cpu_s": web_cpu}


def measure(conn, result: dict, runs: list[int], path: str, viewers: int, label: str, outputs: list) -> dict:
    marks = ",".join("?" * len(runs))
    stamped = {seq: at for seq, at in conn.execute(
        f"SELECT seq, time FROM events WHERE name = 'progress' AND run_id IN ({marks})", runs)}
    latencies, complete = [], 0
    for records in result["records"]:
        first: dict[int, float] = {}
        for seq, received in records:
            if seq in stamped and seq not in first:
                first[seq] = received
        latencies += [received - stamped[seq] for seq, received in first.items()]
        complete += len(first) == len(stamped)
    return {"path": label, "stream": path, "viewers": viewers, "events": len(stamped),
            "received": len(latencies), "expected": len(stamped) * viewers, "viewers_with_every_event": complete,
            "p50_s": pct(latencies, 50), "p99_s": pct(latencies, 99), "max_s": max(latencies, default=None),
            "sse_errors": result.get("errors"), "producers": outputs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", default="/api/events,/events")
    args = parser.parse_args()
    started = time.monotonic()
    from webapp import store
    with Bench() as bench:
        bench.tcp_redis()
        bench.env["OTWEB_HEARTBEAT_TTL_S"] = "3600"
        conn = store.connect(bench.database)
        store.init_schema(conn)
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        bench.web_worker = psutil.Process(web.pid).children()[0].pid  # the gevent worker: recorder and fan-out
        rows = []
        for path in args.streams.split(","):
            rows.append(fleet_phase(bench, url, conn, path, args.viewers, args.seconds))
            rows.append(direct_phase(bench, url, conn, path, args.viewers, args.seconds))
        conn.close()
    report(rows, args, time.monotonic() - started)


def report(rows: list[dict], args, elapsed: float) -> None:
    print(f"\n## {NAME}\n\n{WORKERS} simulated workers x {RATE} progress events/s for {args.seconds:.0f} s, "
          f"{args.viewers} SSE viewers, one gunicorn gevent worker, redis-server on TCP:\n")
    print(table(["path", "stream", "received/expected", "viewers with every event", "p50 ms", "p99 ms", "max ms",
                 "web worker CPU s"],
                [[r["path"], r["stream"], f"{r['received']}/{r['expected']}",
                  f"{r['viewers_with_every_event']}/{r['viewers']}", ms(r["p50_s"]), ms(r["p99_s"]), ms(r["max_s"]),
                  f"{r['web_worker_cpu_s']:.2f}"] for r in rows]))
    ratios = {}
    for fleet, direct in zip(rows[::2], rows[1::2]):
        ratios[fleet["stream"]] = round(fleet["p99_s"] / direct["p99_s"], 2) if fleet["p99_s"] and direct["p99_s"] else None
    fleet_rows = rows[::2]
    every = all(r["received"] == r["expected"] for r in fleet_rows)
    met = every and all(r["p99_s"] is not None and r["p99_s"] < GOAL_P99_S for r in fleet_rows)
    print(f"\np99 ratio fleet / direct, per stream: {ratios}; every event to every viewer: "
          f"{'yes' if every else 'NO'}; goal p99 < {GOAL_P99_S * 1000:.0f} ms: {'met' if met else 'NOT met'}; "
          f"load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {"benchmark": NAME, "machine": machine(), "workers": WORKERS, "rate_per_worker": RATE,
                                "seconds": args.seconds, "rows": rows, "p99_ratio_fleet_over_direct": ratios,
                                "goal_p99_s": GOAL_P99_S, "met": met, "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--producer":
        url, run_id, source, run_dir, start_at, seconds, rate = sys.argv[2:9]
        producer(url, int(run_id), source, run_dir, float(start_at), float(seconds), float(rate))
    else:
        main()
