"""CPU seconds the product spends per minute of training, beside the trainer: the worker process
(bridge, sink, heartbeat, uploads; not its trainer child), the web (gunicorn's arbiter and its
gevent worker, which runs the recorder and the dispatcher as well as the 10 viewers' streams) and,
reported apart, redis-server. Full stack through the fleet's path: redis-server (tests/support/fleet.py's,
TCP, appendonly), `otweb web`'s gunicorn command, `otweb worker`, the demo config made long
(batch 1, its samples every 60 steps kept), 10 SSE viewers on /events (the HTML partials pages use).

CPU = utime + stime from /proc/<pid>/stat at the window's two ends. Two windows in one run: idle
(the same processes and viewers, no run: the baseline) and training (from the first progress
event recorded, so model loading is left out). Goal (issue #17): worker + recorder + web < 0.6 s
per minute of training.

    .venv/bin/python benchmarks/bench_fleet_cpu.py [--seconds 40] [--idle-seconds 20] [--viewers 10]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import psutil

from common import Bench, SSEClients, api, demo_fleet, machine, table, write_results


NAME = "bench_fleet_cpu"
GOAL_S_PER_MIN = 0.6
PRODUCT = ("worker", "web arbiter", "web worker")  # what the goal counts


def cpu_s(pid: int) -> float:
    """utime + stime of one process, from /proc/<pid>/stat (fields 14 and 15, clock ticks)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def window(pids: dict, seconds: float, counts) -> dict:
    """CPU seconds per minute of each process over `seconds` of wall time; counts(): what the
    record holds ({"steps", "entries", "events"}), so that the costs can be put per entry."""
    before, started, counted = {name: cpu_s(pid) for name, pid in pids.items()}, time.monotonic(), counts()
    time.sleep(seconds)
    after, elapsed = {name: cpu_s(pid) for name, pid in pids.items()}, time.monotonic() - started
    per_min = {name: (after[name] - before[name]) * 60 / elapsed for name in pids}
    return {"seconds": elapsed, "per_min": per_min, **{k: v - counted[k] for k, v in counts().items()}}


def counter(conn, run_id: int | None):
    def counts() -> dict:
        if run_id is None:
            return {"steps": 0, "entries": 0, "events": 0}
        row = conn.execute("SELECT progress_json FROM runs WHERE id = ?", (run_id,)).fetchone()
        return {"steps": (json.loads(row[0] or "{}") or {}).get("global_step", 0) if row else 0,
                "entries": conn.execute("SELECT COUNT(*) FROM ingested WHERE run_id = ?", (run_id,)).fetchone()[0],
                "events": conn.execute("SELECT COUNT(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]}
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--samples", action="store_true", help="keep the demo's samples (every 60 steps)")
    args = parser.parse_args()
    started = time.monotonic()
    from webapp import store
    with Bench() as bench:
        server, web, url = demo_fleet(bench)
        worker = bench.worker()
        pids = {"worker": worker.pid, "web arbiter": web.pid, "web worker": psutil.Process(web.pid).children()[0].pid,
                "redis-server": server.proc.pid}
        conn = store.connect(bench.database)
        viewers = SSEClients(bench, url, "/events", args.viewers, "--light", max_s=args.seconds + args.idle_seconds + 300)
        viewers.wait_ready()
        time.sleep(3)  # the worker's first heartbeats and the web's first turns are not the steady state
        idle = window(pids, args.idle_seconds, counter(conn, None))
        config = json.loads((bench.config_dir / "demo.json").read_text())
        config.update(batch_size=1, epochs=10_000)  # long enough for any window; stopped below
        if not args.samples:  # the demo samples every 60 steps: every 2-3 s here, not what a long run does
            config.update(sample_after=0, sample_after_unit="NEVER")
        run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]

        counts, deadline = counter(conn, run_id), time.monotonic() + 180
        while not counts()["steps"] and time.monotonic() < deadline:
            time.sleep(0.1)
        trainer = conn.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
        training = window({**pids, "trainer": trainer}, args.seconds, counts)
        training["events_by_name"] = dict(conn.execute(
            "SELECT name, COUNT(*) FROM events WHERE run_id = ? GROUP BY name", (run_id,)).fetchall())
        api(url, "POST", "/api/training/stop", {"run_id": run_id})
        viewers.close()
        conn.close()
    report(idle, training, args, time.monotonic() - started)


def report(idle: dict, training: dict, args, elapsed: float) -> None:
    names = list(training["per_min"])
    print(f"\n## {NAME}\n\nCPU seconds per minute (utime + stime from /proc), {args.viewers} viewers on /events; "
          f"samples {'every 60 steps' if args.samples else 'off'}; idle {idle['seconds']:.0f} s, training {training['seconds']:.0f} s ({training['steps']} steps; "
          f"{training['entries']} stream entries recorded, {training['events']} of them events):\n")
    print(table(["process", "idle", "training", "training - idle"],
                [[name, f"{idle['per_min'].get(name, 0):.3f}" if name in idle["per_min"] else "-",
                  f"{training['per_min'][name]:.3f}",
                  f"{training['per_min'][name] - idle['per_min'][name]:.3f}" if name in idle["per_min"] else "-"]
                 for name in names]))
    print(f"\nevents of the run by name (the whole run so far): {training['events_by_name']}")
    product = sum(training["per_min"][name] for name in PRODUCT)
    product_idle = sum(idle["per_min"][name] for name in PRODUCT)
    share = product / training["per_min"]["trainer"] if training["per_min"]["trainer"] else None
    met = product < GOAL_S_PER_MIN
    print(f"\nworker + web (recorder, dispatcher, streams): {product:.3f} s per minute of training "
          f"({product_idle:.3f} idle); {100 * share:.2f} % of the trainer's own CPU; goal < {GOAL_S_PER_MIN} s: "
          f"{'met' if met else 'NOT met'}; load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME + ("_samples" if args.samples else ""), {
                                "benchmark": NAME, "machine": machine(), "viewers": args.viewers, "idle": idle,
                                "samples": args.samples,
                                "training": training, "product_s_per_min": product,
                                "product_idle_s_per_min": product_idle, "share_of_trainer_cpu": share,
                                "goal_s_per_min": GOAL_S_PER_MIN, "met": met, "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
