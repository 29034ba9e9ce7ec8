"""Start latency, full stack: from the start request (what the dashboard's Start button posts) to
what a browser sees.

Worker + web (gunicorn -k gevent, the product's command line) + this process reading /api/events
(JSON SSE) in a thread. For each start: POST /api/training/start with the demo config cut to one
epoch (6 steps, no samples), then the SSE receive times of
- the run's `running` state (the stages list appears: "Starting the trainer", with its timer),
- the first status from the trainer process ("loading model"; the dispatcher's "starting on <worker>"
  does not count),
- the first `progress` event (the first training step done): the figure the goal is about.
Baseline: the same worker with no warm trainer (OTWEB_WARM_TRAINER=0: a trainer process spawned
per run, importing torch and diffusers after the click), alternated with the warm worker in the
same run, cold then warm, PAIRS times. Each worker idles WARM_WAIT s before its start, as a worker
waiting for work does (the warm one imports meanwhile).

    .venv/bin/python benchmarks/bench_start_latency.py [--pairs 2] [--warm-wait 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from bench_commands import Feed
from common import Bench, api, build_demo, machine, table, wait_demo, wait_http, write_results

NAME = "bench_start_latency"
TERMINAL = ("completed", "stopped", "failed", "interrupted", "canceled")


def one_start(bench: Bench, feed: Feed, url: str, config: dict, warm: bool, warm_wait: float) -> dict:
    bench.env["OTWEB_WARM_TRAINER"] = "1" if warm else "0"
    worker = bench.worker()
    time.sleep(warm_wait)
    mark = feed.mark()
    began = time.time()
    run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]
    of_run = lambda name, test=lambda e: True: (  # noqa: E731
        lambda e: e.get("run_id") == run_id and e.get("event") == name and test(e))
    running, _ = feed.wait(of_run("run", lambda e: e["data"].get("state") == "running"), 60, mark)
    # the trainer's own first status: not the dispatcher's "starting on <worker>"
    status, _ = feed.wait(of_run("status", lambda e: not e["data"].get("text", "").startswith("starting")), 120, mark)
    progress, _ = feed.wait(of_run("progress"), 180, mark)
    feed.wait(of_run("run", lambda e: e["data"].get("state") in TERMINAL), 120, mark)
    worker.terminate()
    worker.wait(timeout=30)
    return {"warm": warm, "run_id": run_id, "stages_visible_s": running["received"] - began,
            "first_status_s": status["received"] - began, "first_step_s": progress["received"] - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--warm-wait", type=float, default=20.0)
    args = parser.parse_args()
    with Bench() as bench:
        bench.redis()
        demo = build_demo(bench)
        _, url = bench.web()
        wait_http(url + "/api/health", 60)
        wait_demo(bench, demo)
        demo_config = json.loads((bench.config_dir / "demo.json").read_text())
        config = {**demo_config, "epochs": 1, "sample_after_unit": "NEVER", "sample_before_training": False}
        feed = Feed(url)
        feed.ready.wait(10)
        starts = []
        for _ in range(args.pairs):
            for warm in (False, True):
                starts.append(one_start(bench, feed, url, config, warm, args.warm_wait))
                print(json.dumps(starts[-1]), flush=True)
    summary = {}
    for warm in (False, True):
        mine = [s for s in starts if s["warm"] == warm]
        summary["warm" if warm else "cold"] = {
            key: statistics.median(s[key] for s in mine)
            for key in ("stages_visible_s", "first_status_s", "first_step_s")}
    summary["ratio_first_step"] = summary["warm"]["first_step_s"] / summary["cold"]["first_step_s"]
    print(table(["worker", "stages visible", "first status", "first step"],
                [[mode, *(f"{summary[mode][k]:.2f} s" for k in ("stages_visible_s", "first_status_s", "first_step_s"))]
                 for mode in ("cold", "warm")]))
    print(f"first step, warm / cold: {summary['ratio_first_step']:.2f}")
    write_results(NAME, {"machine": machine(), "pairs": args.pairs, "warm_wait_s": args.warm_wait,
                         "starts": starts, "summary": summary})


if __name__ == "__main__":
    main()
