"""Shared by bench_ranks.py (CPU, the demo model) and bench_ranks_gpu.py (SD 1.5 on GPUs): one run
of a config on N ranks, started as the worker starts them (webapp.worker.ranks), timed from its
progress events after a warm-up. Nothing here imports torch: the ranks are spawned processes."""
from __future__ import annotations

import multiprocessing
import queue
import re
import time
from pathlib import Path

from common import ROOT  # noqa: F401 - puts the project on sys.path

from webapp.worker.ranks import Ranks

REDUCE_LOG = re.compile(r"gradient averaging over \d+ ranks: ([0-9.]+) ms per optimizer step")


def measure(config: dict, world: int, workspace: Path, run_dir: Path, warmup: int = 3,
            timeout: float = 1800) -> dict:
    """Steps/s and samples/s after ``warmup`` steps, and the all-reduce time per step."""
    if world > 1:
        indexes = config.get("device_indexes") or ",".join(str(i) for i in range(world))
        config = {**config, "multi_gpu": True, "device_indexes": indexes}
    else:
        config = {**config, "multi_gpu": False}
    run_dir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    events, commands = context.Queue(), context.Queue()
    ranks = Ranks(context, world, 0, config, run_dir, workspace, events, commands)
    ranks.start()
    times, reduce_ms, error, deadline = {}, None, None, time.monotonic() + timeout
    try:
        while ranks.running() and time.monotonic() < deadline:
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event["event"] == "progress":
                times[event["data"]["global_step"]] = time.perf_counter()
            elif event["event"] == "log" and (match := REDUCE_LOG.search(event["data"]["text"])):
                reduce_ms = float(match.group(1))
            elif event["event"] == "error":
                error = event["data"]["message"]
        while True:  # what rank 0 said before it exited
            try:
                event = events.get(timeout=0.5)
            except queue.Empty:
                break
            if event["event"] == "log" and (match := REDUCE_LOG.search(event["data"]["text"])):
                reduce_ms = float(match.group(1))
    finally:
        ranks.end_all()
        ranks.close()
    if error or len(times) <= warmup + 1:
        raise RuntimeError(f"{world}-rank run failed: {error or 'too few steps'} (see {run_dir})")
    steps = sorted(times)[warmup:]
    seconds = times[steps[-1]] - times[steps[0]]
    steps_per_s = (len(steps) - 1) / seconds
    global_batch = int(config.get("batch_size", 1)) * world
    return {"ranks": world, "batch_per_rank": global_batch // world, "global_batch": global_batch,
            "steps_timed": len(steps) - 1, "steps_per_s": steps_per_s,
            "samples_per_s": steps_per_s * global_batch, "allreduce_ms_per_step": reduce_ms}


def scaling(results: list[dict]) -> float:
    """samples/s on N ranks over N × samples/s on one (1.0 = perfect)."""
    one, many = results[0], results[-1]
    return many["samples_per_s"] / (many["ranks"] * one["samples_per_s"])


def rows(results: list[dict]) -> list[list]:
    return [[r["ranks"], r["batch_per_rank"], r["global_batch"], f"{r['steps_per_s']:.2f}",
             f"{r['samples_per_s']:.1f}",
             "–" if r["allreduce_ms_per_step"] is None else f"{r['allreduce_ms_per_step']:.2f}"]
            for r in results]


HEADERS = ["ranks", "batch/rank", "global batch", "steps/s", "samples/s", "all-reduce ms/step"]
