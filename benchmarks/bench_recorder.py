"""Recorder throughput and lag: progress entries XADDed to the event stream (as workers send them),
recorded by the control plane's Recorder (consumer group, one transaction per batch, XACK, XDEL,
publish). Real redis-server (tests/support/fleet.py's: TCP, appendonly on, as the README's fleet runs
it), SQLite in a temp folder.

1. backlog: --events entries XADDed at once, then drained: events/s of wall time, and per CPU
   second of the recorder's process (what a core would do on a host that is not shared).
2. sustained: a producer process XADDs --rate entries/s for --seconds (pre-encoded, sent in
   pipelines every 5 ms) while the recorder records; its lag (now minus the stream id's time of
   the newest entry of each batch, at the batch's end) p50/p99/max, and the rate it recorded.
Baseline, same run: the same events appended one at a time through eventlog.EventSink (one
transaction and one PUBLISH each, as the web appends its own events).

    .venv/bin/python benchmarks/bench_recorder.py [--events 20000] [--rate 20000] [--seconds 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from common import PY, ROOT, Bench, machine, ms, pct, table, write_results


NAME = "bench_recorder"
GOAL_PER_S = 20_000


def progress(n: int) -> dict:
    return {"global_step": n, "max_step": 10**6, "loss": 0.5, "lr": 1e-4, "speed": 12.0, "eta_s": 100.0}


def entries(run_id: int, source: str, first: int, count: int) -> list[dict]:
    from webapp.eventlog import ENTRY_EVENT, encode_entry
    return [encode_entry(ENTRY_EVENT, run_id, source, n, event="progress", data=progress(n), time=time.time())
            for n in range(first, first + count)]


def producer(url: str, run_id: int, source: str, rate: float, seconds: float, start_at: float) -> None:
    """XADD `rate` entries/s for `seconds`, as many workers together would."""
    import redis

    from webapp.settings import worker_stream
    client = redis.Redis.from_url(url, decode_responses=True)
    todo = entries(run_id, source, 1, int(rate * seconds))
    sent = 0
    time.sleep(max(0.0, start_at - time.time()))
    while sent < len(todo):
        due = min(len(todo), int((time.time() - start_at) * rate))
        if due > sent:
            pipe = client.pipeline(transaction=False)
            for fields in todo[sent:due]:
                pipe.xadd(worker_stream("w"), fields)
            pipe.execute()
            sent = due
        time.sleep(0.005)
    print(f"sent {sent} in {time.time() - start_at:.2f} s", flush=True)


def setup(bench: Bench, client, tag: str):
    from webapp import store
    from webapp.control.recorder import Recorder
    from webapp.settings import WORKERS_KEY
    conn = store.connect(bench.tmp / f"{tag}.sqlite3")
    store.init_schema(conn)
    run_id = store.create_run(conn, tag, {})
    store.assignments.assign(conn, run_id, "w", f"{tag}-a")
    client.sadd(WORKERS_KEY, "w")  # the recorder reads the streams of the fleet's workers
    return conn, run_id, Recorder(conn, client, lambda r: bench.tmp / "runs" / str(r), tag)


def backlog(bench: Bench, client, count: int) -> dict:
    from webapp.settings import worker_stream
    conn, run_id, recorder = setup(bench, client, "backlog")
    pipe = client.pipeline(transaction=False)
    for fields in entries(run_id, "backlog-a", 1, count):
        pipe.xadd(worker_stream("w"), fields)
    pipe.execute()
    lags, cpu, started = [], time.process_time(), time.perf_counter()
    while recorder.step(block_ms=1):
        lags.append(recorder.lag_s)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert recorder.recorded == count, recorder.stats()
    conn.close()
    return {"events": count, "per_s": count / wall, "per_cpu_s": count / cpu, "lag_max_s": max(lags)}


def sustained(bench: Bench, client, rate: float, seconds: float) -> dict:
    conn, run_id, recorder = setup(bench, client, "sustained")
    recorder.step(block_ms=1)  # the group exists before the first entry
    start_at = time.time() + 1.0
    proc = subprocess.Popen([PY, __file__, "--producer", bench.env["REDIS_URL"], str(run_id), "sustained-a",
                             str(rate), str(seconds), str(start_at)], cwd=ROOT, env=bench.env,
                            stdout=subprocess.PIPE, text=True)
    total, lags, cpu = int(rate * seconds), [], None
    deadline = start_at + seconds + 60
    while recorder.recorded < total and time.time() < deadline:
        if recorder.step(block_ms=50):
            cpu = cpu if cpu is not None else time.process_time()
            lags.append(recorder.lag_s)
    ended = time.time()
    cpu = time.process_time() - (cpu or time.process_time())
    out = proc.communicate(timeout=30)[0].strip()
    conn.close()
    return {"rate": rate, "seconds": seconds, "recorded": recorder.recorded, "expected": total,
            "recorded_per_s": recorder.recorded / max(1e-9, ended - start_at), "recorder_cpu_s": cpu,
            "lag_p50_s": pct(lags, 50), "lag_p99_s": pct(lags, 99), "lag_max_s": max(lags, default=None),
            "behind_at_end_s": ended - (start_at + seconds), "batches": len(lags), "producer": out}


def baseline(bench: Bench, client, count: int) -> dict:
    from webapp import store
    from webapp.eventlog import EventSink
    conn = store.connect(bench.tmp / "baseline.sqlite3")
    store.init_schema(conn)
    run_id = store.create_run(conn, "baseline", {})
    sink, started = EventSink(conn, client), time.perf_counter()
    for n in range(count):
        sink.emit(run_id, {"event": "progress", "data": progress(n), "time": time.time()})
    conn.close()
    return {"events": count, "per_s": count / (time.perf_counter() - started)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=GOAL_PER_S)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    import redis
    started = time.monotonic()
    with Bench() as bench:
        server = bench.tcp_redis()
        client = redis.Redis.from_url(server.url, decode_responses=True)
        drained = backlog(bench, client, args.events)
        steady = sustained(bench, client, args.rate, args.seconds)
        base = baseline(bench, client, min(args.events, 5000))
    report(drained, steady, base, time.monotonic() - started)


def report(drained: dict, steady: dict, base: dict, elapsed: float) -> None:
    print(f"\n## {NAME}\n")
    print(table(["what", "events", "events/s", "events per recorder CPU s", "lag"], [
        ["backlog drained by the recorder", drained["events"], f"{drained['per_s']:,.0f}",
         f"{drained['per_cpu_s']:,.0f}", f"max {ms(drained['lag_max_s'])} ms"],
        [f"sustained {steady['rate']:,.0f}/s for {steady['seconds']:.0f} s", f"{steady['recorded']}/{steady['expected']}",
         f"{steady['recorded_per_s']:,.0f}",
         f"{steady['recorded'] / steady['recorder_cpu_s']:,.0f}" if steady["recorder_cpu_s"] else "-",
         f"p50 {ms(steady['lag_p50_s'])}, p99 {ms(steady['lag_p99_s'])}, max {ms(steady['lag_max_s'])} ms"],
        ["baseline: EventSink one by one", base["events"], f"{base['per_s']:,.0f}", "-", "-"]]))
    ratio = drained["per_s"] / base["per_s"]
    met = drained["per_s"] >= GOAL_PER_S
    print(f"\nrecorder / one by one: {ratio:.1f}x; goal >= {GOAL_PER_S:,}/s recorded: {'met' if met else 'NOT met'} "
          f"(backlog); sustained: {steady['behind_at_end_s']:.2f} s behind when the producer stopped; "
          f"load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME, {"benchmark": NAME, "machine": machine(), "backlog": drained, "sustained": steady,
                                "baseline": base, "ratio": ratio, "goal_per_s": GOAL_PER_S, "met": met,
                                "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--producer":
        url, run_id, source, rate, seconds, start_at = sys.argv[2:8]
        producer(url, int(run_id), source, float(rate), float(seconds), float(start_at))
    else:
        main()
