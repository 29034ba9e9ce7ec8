"""Dataset delivery to a worker (issue 28, "Measured"): a run's dataset in the web's library sent to
the worker that takes it, through Redis, against a plain file copy of the same folder.

One box: a fleet's redis-server (TCP, appendonly), the web under the product's gunicorn + gevent
command line (its control loop dispatches and sends), gevent's monitor thread on (it reports each
stretch the event loop stays blocked over 50 ms). The worker side runs here, as `otweb worker` runs
it, less the trainer: a heartbeat, the assignment taken by BLMOVE, worker/dataset_receive into a
dataset cache of its own (its folder has no datasets/), then the run's end through the worker's
event stream. The dataset: IMAGES files of MB MB each (random bytes named .png: delivery reads no
pixels) with a caption each.

Per pair, in the same run: delivery to an empty cache (assignment taken -> dataset materialised)
and shutil.copytree of the same folder; then a second run to the same cache (what it sends).
Reported: each pair's times and ratio (median + spread), the first delivery apart (the web hashes
the dataset once; later ones read its cached sums), bytes sent by the second run (goal 0), Redis
used_memory's peak during the deliveries (sampled every 20 ms, and INFO's used_memory_peak; goal
< 64 MB), the event loop's blocks > 50 ms (goal 0).

    .venv/bin/python benchmarks/bench_dataset_delivery.py [--images 500] [--mb 2] [--pairs 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_noisy_neighbour import blocking_reports  # noqa: E402
from common import Bench, machine, table, wait_http, write_results  # noqa: E402

NAME = "bench_dataset_delivery"
WORKER = "courier"


def make_dataset(folder: Path, images: int, mb: float) -> int:
    folder.mkdir(parents=True)
    size = int(mb * 1e6)
    for i in range(images):
        (folder / f"img{i:04d}.png").write_bytes(os.urandom(size))
        (folder / f"img{i:04d}.txt").write_text(f"a photo of thing {i}, trigger")
    return sum(p.stat().st_size for p in folder.iterdir())


class BenchWorker:
    """The worker's side of a delivery, with the worker's own modules."""

    def __init__(self, url: str, folder: Path):
        from webapp.worker.loop import redis_client
        from webapp.worker.stream_sink import StreamSink
        from webapp.settings import worker_stream
        self.redis, self.folder = redis_client(url), folder
        self.sink = StreamSink(self.redis, folder / "spool", worker_stream(WORKER))
        self.run_id = None
        self.stopping = threading.Event()
        threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        from webapp.protocol import dumps
        from webapp.settings import WORKERS_KEY, heartbeat_key
        while not self.stopping.is_set():
            self.redis.set(heartbeat_key(WORKER), dumps({"name": WORKER, "labels": [], "gpus": [], "time": time.time(),
                                                         "run_id": self.run_id, "devices": [0]}), px=15000)
            self.redis.sadd(WORKERS_KEY, WORKER)
            self.stopping.wait(0.5)

    def take_and_receive(self, cache_dir: Path) -> dict:
        from webapp.config import paths
        from webapp.protocol import Event, RunState, make_event
        from webapp.settings import assign_key, taken_key
        from webapp.worker.dataset_cache import DatasetCache
        from webapp.worker.dataset_receive import DatasetReceiver
        raw = None
        while raw is None:
            raw = self.redis.blmove(assign_key(WORKER), taken_key(WORKER), 1, "RIGHT", "LEFT")
        started = time.monotonic()
        assignment = json.loads(raw)
        self.run_id = assignment["run_id"]
        self.sink.bind(self.run_id, assignment["id"], self.folder / "runs" / str(self.run_id))
        receiver = DatasetReceiver(self.redis, WORKER, DatasetCache(cache_dir, 10**12), self.folder,
                                   paths.read_roots(self.folder), lambda text: None)
        _, outcome = receiver.receive(assignment, assignment["config"])
        seconds = time.monotonic() - started
        receiver.cache.release(self.run_id)
        self.sink.emit(self.run_id, make_event(Event.RUN, state=RunState.COMPLETED.value))
        self.redis.lrem(taken_key(WORKER), 1, raw)
        self.run_id = None
        return {**outcome, "seconds": seconds}


class MemorySampler:
    def __init__(self, client):
        self.client, self.peak, self.stopping, self.at_peak = client, 0, threading.Event(), {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            info = self.client.info("memory")
            if int(info["used_memory"]) > self.peak:  # and what it was made of
                self.peak = int(info["used_memory"])
                self.at_peak = {k: info.get(k) for k in ("used_memory_dataset", "mem_clients_normal",
                                                          "mem_aof_buffer", "used_memory_overhead")}
            self.stopping.wait(0.02)

    def stop(self) -> int:
        self.stopping.set()
        self.thread.join()
        return self.peak


def deliver(bench: Bench, worker: BenchWorker, conn, cache_dir: Path) -> dict:
    from webapp import store
    store.create_run(conn, "delivery", {"concepts": [{"path": "datasets/big"}]})
    return worker.take_and_receive(cache_dir)


def copy(source: Path, target: Path) -> float:
    started = time.monotonic()
    shutil.copytree(source, target)
    seconds = time.monotonic() - started
    shutil.rmtree(target)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--mb", type=float, default=2.0)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    import redis

    from webapp import store
    with Bench() as bench:
        source = bench.workspace / "datasets" / "big"
        total = make_dataset(source, args.images, args.mb)
        server = bench.tcp_redis()
        bench.env.update(GEVENT_MONITOR_THREAD_ENABLE="1", GEVENT_MAX_BLOCKING_TIME="0.05")
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        client = redis.Redis.from_url(server.url)
        worker = BenchWorker(server.url, bench.tmp / "worker-host")
        conn = store.connect(bench.database)
        baseline_memory = int(client.info("memory")["used_memory"])
        sampler = MemorySampler(client)
        first = deliver(bench, worker, conn, bench.tmp / "cache-cold")    # the web hashes the dataset here
        pairs = []
        for i in range(args.pairs):
            delivered = deliver(bench, worker, conn, bench.tmp / f"cache-{i}")
            copied = copy(source, bench.tmp / f"copy-{i}")
            again = deliver(bench, worker, conn, bench.tmp / f"cache-{i}")  # the second run, same cache
            pairs.append({"delivery_s": delivered["seconds"], "copy_s": copied, "sent": delivered["sent"],
                          "bytes_sent": delivered["bytes_sent"], "second_run_sent": again["sent"],
                          "second_run_bytes": again["bytes_sent"], "second_run_s": again["seconds"]})
            shutil.rmtree(bench.tmp / f"cache-{i}")
        peak = sampler.stop()
        info_peak = int(client.info("memory")["used_memory_peak"])
        worker.stopping.set()
        conn.close()
        port = url.rsplit(":", 1)[1]
        web_log = (bench.tmp / f"web-{port}.log").read_text(errors="replace")
        if os.environ.get("BENCH_KEEP_LOG"):
            Path(os.environ["BENCH_KEEP_LOG"]).write_text(web_log)
        blocked = blocking_reports(web_log)
    ratios = [p["delivery_s"] / p["copy_s"] for p in pairs]
    result = {"machine": machine(), "images": args.images, "files": 2 * args.images, "bytes": total,
              "first_delivery_s": first["seconds"], "pairs": pairs,
              "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
              "delivery_mb_s_median": total / 1e6 / statistics.median(p["delivery_s"] for p in pairs),
              "redis_used_memory_baseline": baseline_memory, "redis_used_memory_peak_sampled": peak,
              "redis_used_memory_peak_info": info_peak, "redis_at_peak": sampler.at_peak,
              "loop_blocked_over_50ms": blocked}
    print(table(["pair", "delivery", "copytree", "ratio", "sent", "second run sent"],
                [[i + 1, f"{p['delivery_s']:.2f} s", f"{p['copy_s']:.2f} s", f"{r:.1f}x", p["sent"],
                  f"{p['second_run_sent']} files, {p['second_run_bytes']} B"] for i, (p, r) in enumerate(zip(pairs, ratios))]))
    print(f"{2 * args.images} files, {total / 1e6:.0f} MB; first delivery (web hashing cold) {first['seconds']:.2f} s; "
          f"delivery/copy median {result['ratio_median']:.1f}x (spread {result['ratio_min']:.1f}-{result['ratio_max']:.1f}); "
          f"Redis used_memory peak {peak / 1e6:.1f} MB sampled ({info_peak / 1e6:.1f} MB INFO, "
          f"{baseline_memory / 1e6:.1f} MB before; at the peak {sampler.at_peak}); "
          f"event loop blocked > 50 ms: {blocked['reports']} times")
    write_results(NAME, result)


if __name__ == "__main__":
    main()
