"""A worker over a slow link: a delaying TCP relay (tests/relay.py, D ms each way, latency only)
between `otweb worker` and a TCP redis-server (tests/fleet.py's, appendonly); the web (gunicorn +
gevent, its control loop records) talks to Redis directly. For D = 0, 50, 100, 250 ms:

- entries/s the worker's sink sends through the relay: one round trip per entry (how the worker sent
  before issue 33), and in the pump's batches (PUMP_BATCH entries per round trip, as it sends now);
- a demo run with samples: how far behind the record falls, sampled every 0.25 s from the web's
  SQLite: the time since the trainer did the first step the record does not hold yet (0 when it
  holds every step done), and that in steps. The trainer's own time of each step is its loss
  row's time (stamped in the trainer); the trainer batches progress once a second, so ~1 s is the floor;
- the time from the trainer's end (its `finished` event, stamped in the trainer) to the run's
  final state in the record; that the state is `completed` with every loss row and sample.
Goal (issue 33): at 100 ms each way the record stays within 2 s of the trainer and the run ends
`completed` with every row.

    .venv/bin/python benchmarks/bench_slow_link.py [--delays 0,50,100,250] [--epochs 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from common import ROOT, Bench, api, demo_fleet, machine, pct, stop, table, write_results

sys.path.insert(0, str(ROOT / "tests"))
from relay import DelayRelay  # noqa: E402

NAME = "bench_slow_link"
GOAL_LAG_S = 2.0
GOAL_DELAY_MS = 100


def sink_rate(redis_url: str, tmp, batch: int, count: int) -> float:
    """Entries/s the worker's StreamSink sends through the relay, ``batch`` per round trip."""
    import redis

    from webapp.protocol import Event, make_event
    from webapp.worker.stream_sink import StreamSink
    client = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
    sink = StreamSink(client, tmp / f"spool-{batch}-{time.monotonic_ns()}", stream="bench:slow-link")
    sink.bind(1, "bench", tmp)
    started = time.perf_counter()
    for first in range(0, count, batch):
        with sink.together():
            for n in range(first, min(count, first + batch)):
                sink.emit(1, make_event(Event.STATUS, text=f"entry {n}"))
    took = time.perf_counter() - started
    assert sink.sent == count and not len(sink.spool)
    client.delete("bench:slow-link")
    return count / took


def demo_run(url: str, conn, config: dict) -> dict:
    run_id = api(url, "POST", "/api/queue", {"config": config})["run_ids"][0]
    samples, final_seen = [], None
    while final_seen is None:
        now = time.time()
        state, recorded = conn.execute("SELECT state, (SELECT MAX(step) FROM metrics WHERE run_id = :r) FROM runs"
                                       " WHERE id = :r", {"r": run_id}).fetchone()
        samples.append((now, recorded or 0))
        if state not in ("queued", "running"):
            final_seen = now
        time.sleep(0.25)
    times = dict(conn.execute("SELECT step, time FROM metrics WHERE run_id = ?", (run_id,)).fetchall())
    first_step = min(times) if times else None
    lags, behind = [], []
    for at, recorded in samples:
        done = [s for s, t in times.items() if t <= at]
        if not done:
            continue  # not training yet
        trainer_step = max(done)
        missing = recorded + 1 if recorded else first_step
        lags.append(at - times[missing] if missing in times and times[missing] <= at else 0.0)
        behind.append(trainer_step - recorded)
    finished = conn.execute("SELECT time FROM events WHERE run_id = ? AND name = 'finished'", (run_id,)).fetchone()
    state, max_step = conn.execute("SELECT state, json_extract(progress_json, '$.max_step') FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
    entries = conn.execute("SELECT COUNT(*) FROM ingested WHERE run_id = ?", (run_id,)).fetchone()[0]
    sampled = conn.execute("SELECT COUNT(*) FROM samples WHERE run_id = ?", (run_id,)).fetchone()[0]
    span = (max(times.values()) - min(times.values())) if times else 0
    return {"run_id": run_id, "state": state, "rows": len(times), "max_step": max_step, "samples": sampled,
            "entries": entries, "entries_per_s": entries / span if span else None,
            "lag_max_s": max(lags, default=None), "lag_p50_s": pct(lags, 50), "behind_max_steps": max(behind, default=None),
            "end_to_final_s": final_seen - finished[0] if finished else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delays", default="0,50,100,250")
    parser.add_argument("--epochs", type=int, default=20, help="the demo's 24 images at batch 4: 6 steps an epoch")
    parser.add_argument("--batched", type=int, default=2000, help="entries sent in batches, per delay")
    args = parser.parse_args()
    delays = [int(d) for d in args.delays.split(",")]
    started = time.monotonic()
    from webapp import store
    from webapp.worker import supervisor
    batch = getattr(supervisor, "PUMP_BATCH", 1)  # 1: the worker before issue 33, one event per round trip
    rows = []
    with Bench() as bench:
        server, _, url = demo_fleet(bench)
        conn = store.connect(bench.workspace / "otweb.sqlite3")
        config = {**json.loads((bench.config_dir / "demo.json").read_text()), "epochs": args.epochs,
                  "sample_after": 10, "sample_after_unit": "STEP", "sample_before_training": False}
        for delay in delays:
            with DelayRelay(server.port, delay / 1000) as relay:
                relayed = f"redis://127.0.0.1:{relay.port}/0"
                one = sink_rate(relayed, bench.tmp, 1, 20 if delay else 500)
                many = sink_rate(relayed, bench.tmp, batch, args.batched if batch > 1 else 20)
                bench.env["REDIS_URL"] = relayed
                worker = bench.worker()
                bench.env["REDIS_URL"] = server.url
                run = demo_run(url, conn, config)
                stop(worker)
            rows.append({"delay_ms": delay, "one_per_trip_per_s": one, "batched_per_s": many, **run})
            print(json.dumps(rows[-1]), flush=True)
        conn.close()
    report(rows, time.monotonic() - started)
    write_results(NAME, {"machine": machine(), "load_avg": os.getloadavg(), "epochs": args.epochs, "rows": rows})


def report(rows: list[dict], elapsed: float) -> None:
    def f(value, digits=1):
        return "–" if value is None else f"{value:.{digits}f}"
    print(f"\n## {NAME}\n\nthe worker reaches Redis through a relay adding D ms each way; a demo run with a sample "
          "every 10 steps:\n")
    print(table(["D (ms)", "entries/s, 1 per round trip", "entries/s, batched", "run's entries/s",
                 "record behind: max (s)", "median (s)", "max (steps)", "trainer end → final state (s)", "state",
                 "loss rows / steps", "samples"],
                [[r["delay_ms"], f(r["one_per_trip_per_s"]), f(r["batched_per_s"], 0), f(r["entries_per_s"]),
                  f(r["lag_max_s"], 2), f(r["lag_p50_s"], 2), r["behind_max_steps"], f(r["end_to_final_s"], 2),
                  r["state"], f"{r['rows']} / {r['max_step']}", r["samples"]] for r in rows]))
    goal = next((r for r in rows if r["delay_ms"] == GOAL_DELAY_MS), None)
    if goal:
        met = (goal["state"] == "completed" and goal["rows"] == goal["max_step"]
               and (goal["lag_max_s"] or 0) < GOAL_LAG_S)
        print(f"\nGoal at {GOAL_DELAY_MS} ms each way (record within {GOAL_LAG_S:.0f} s of the trainer, completed with "
              f"every row): {'met' if met else 'NOT met'}")
    print(f"load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")


if __name__ == "__main__":
    main()
