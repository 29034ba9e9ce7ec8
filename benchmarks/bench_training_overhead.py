"""Training speed with the whole product attached vs. the bare trainer.

A (baseline): the built-in backend in a process of its own, as `otweb train --quiet` runs it
  (make_backend + TrainCallbacks that do nothing), except that the callbacks' progress() only
  notes time.time() at each step, and stops the run (TrainCommands.stop) --seconds after step 1.
  Steps/s = steps between the first and the last step / the time between them.
B (full stack): a worker (which spawns the trainer process) + the web under gunicorn -k gevent +
  10 SSE clients on /api/events; the run is started through the JSON API and stopped through it
  (POST /api/training/stop) --seconds after the first progress event reached a client. Steps/s
  comes from the progress events' `time` fields (set in the trainer process): the first and the
  last one (the trainer batches progress once a second but always sends the held one before `saving`).
Both exclude model loading and the final save; the fixed time window keeps the run length in
seconds whatever the demo model's speed. CPU seconds of the trainer and of the product's
other processes (worker, web, Redis, the SSE clients) are sampled at 20 Hz from outside and read off
at the first and the last step's time: their share of the machine while B trains is a second view
that a noisy host disturbs far less than steps/s. Runs alternate A B A B (--pairs) to cancel drift.
The whole machine's busy time is sampled too: what neither the trainer, the product nor this script
used is foreign load (other users of a shared host). A pair with >= 5% foreign load in either run
is marked and run again while --budget lasts (at most 2 extra pairs); the ratio is taken over the
undisturbed pairs. The idle stack (worker, web, Redis) stays up during A; its CPU use is reported.

    .venv/bin/python benchmarks/bench_training_overhead.py [--pairs 2 --batch-size 1 --seconds 8 --budget 75]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import (PY, Bench, SSEClients, api, build_demo, machine, stop, table, wait_demo, wait_http,
                    write_results)
from cpu import CpuSampler

NAME = "bench_training_overhead"
CLIENTS = 10
FOREIGN_LIMIT = 0.05  # a run in which processes outside the benchmark took >= 5% of the machine: disturbed


def short_config(config_dir: Path, batch_size: int) -> dict:
    config = json.loads((config_dir / "demo.json").read_text())
    # samples and backups would dominate the step time: off. Epochs: more than a run reaches, as
    # every run is stopped (the stop command, as the UI's Stop) a fixed time after its first step
    return {**config, "batch_size": batch_size, "epochs": 10_000, "sample_after": 0,
            "sample_after_unit": "NEVER", "backup_after": 0, "backup_after_unit": "NEVER",
            "save_every": 0, "save_every_unit": "NEVER"}


def quiet_child(config_path: str, workspace: str, seconds: str, out: str) -> None:
    """Baseline: the backend with callbacks that do no work but read the clock at each step and
    stop the run `seconds` after the first."""
    from webapp.trainer.backend_factory import make_backend
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands

    commands = TrainCommands()

    class StepClock(TrainCallbacks):
        first = last = None

        def progress(self, *, global_step, **_):
            now = time.time()  # the clock make_event uses for the events' `time` in B
            if self.first is None:
                self.first = (global_step, now)
            self.last = (global_step, now)
            if now - self.first[1] >= float(seconds):
                commands.stop()

    config = json.loads(Path(config_path).read_text())
    run_dir = Path(workspace) / "runs" / f"quiet-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    clock = StepClock()
    backend = make_backend(config, clock, commands, run_dir=run_dir, base_dir=Path(workspace))
    try:
        backend.start()
        backend.train()
    finally:
        backend.end()
    (s0, t0), (s1, t1) = clock.first, clock.last
    Path(out).write_text(json.dumps({"first_step": s0, "last_step": s1, "t0": t0, "t1": t1, "seconds": t1 - t0}))


def trainer_of(worker_pid: int):
    """The worker's spawned trainer process (not multiprocessing's resource tracker)."""
    def find():
        return [c.pid for c in psutil.Process(worker_pid).children() if "spawn_main" in " ".join(c.cmdline())]
    return find


def measure(trainer_pids, stack_pids: list[int], wait) -> dict:
    """Run wait() (which returns the step timing) while sampling the CPU of the trainer, of the
    product's other processes, of this process and of the whole machine (the rest: foreign load)."""
    sampler = CpuSampler({"trainer": trainer_pids, "stack": lambda: stack_pids,
                          "self": lambda: [os.getpid()], "machine": None})
    sampler.start()
    try:
        result = wait()
    finally:
        sampler.stop()
    used = {name: sampler.used(name, result["t0"], result["t1"]) for name in sampler.groups}
    steps, capacity = result["last_step"] - result["first_step"], os.cpu_count() * result["seconds"]
    known = [used[k] for k in ("machine", "trainer", "stack", "self")]
    foreign = None if None in known else known[0] - sum(known[1:])
    return {**result, "steps_per_s": steps / result["seconds"],
            "trainer_cpu_s_per_step": used["trainer"] and used["trainer"] / steps, "stack_cpu_s": used["stack"],
            # the share of the machine the product's other processes took while the trainer stepped
            "stack_cpu_share": used["stack"] and used["stack"] / capacity,
            # ... and the share that processes outside this benchmark took (other users of the host)
            "foreign_cpu_share": foreign and max(0.0, foreign / capacity)}


def run_quiet(bench: Bench, config_path: Path, seconds: float, stack_pids: list[int]) -> dict:
    out = bench.tmp / f"quiet-{time.monotonic_ns()}.json"
    child = subprocess.Popen([PY, __file__, "--quiet-child", str(config_path), str(bench.workspace), str(seconds),
                              str(out)],
                             env=bench.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.callback(stop, child)

    def wait():
        if child.wait(timeout=150) != 0:
            raise RuntimeError(f"the quiet trainer exited with {child.returncode}")
        return json.loads(out.read_text())
    return {"kind": "A", **measure(lambda: [child.pid], stack_pids, wait)}


def run_stack(bench: Bench, url: str, config: dict, seconds: float, worker_pid: int, stack_pids: list[int]) -> dict:
    clients = SSEClients(bench, url, "/api/events", CLIENTS, "--until-run-end", max_s=150)
    clients.wait_ready()
    run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]
    seen = {}

    def wait():
        clients.wait_line("PROGRESS", timeout=120)
        time.sleep(seconds)
        api(url, "POST", "/api/training/stop", {})
        result = clients.results(timeout=160)
        records = result["records"]
        progress = sorted((r[4], r[3]) for r in records[0] if r[1] == "progress" and r[4] is not None)
        (s0, t0), (s1, t1) = progress[0], progress[-1]
        seen.update(events_per_client=[len(r) for r in records], progress_events_seen=len(progress))
        return {"first_step": s0, "last_step": s1, "t0": t0, "t1": t1, "seconds": t1 - t0}
    result = measure(trainer_of(worker_pid), stack_pids + [clients.proc.pid], wait)
    state = api(url, "GET", "/api/training/status")["run"]
    return {"kind": "B", "run_id": run_id, "state": state["state"] if state["id"] == run_id else "?", **result,
            "product_speed": (state.get("progress") or {}).get("speed"), **seen}


def main(args) -> None:
    started = time.monotonic()
    with Bench() as bench:
        if args.omp_passive:  # inherited by the quiet trainer and by the worker's trainer alike
            bench.env["OMP_WAIT_POLICY"] = "PASSIVE"
        demo = build_demo(bench)
        bench.redis()
        worker = bench.worker()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        wait_demo(bench, demo)
        config = short_config(bench.config_dir, args.batch_size)
        config_path = bench.tmp / "short.json"
        config_path.write_text(json.dumps(config))
        # the worker's own CPU (not its trainer's), gunicorn's master and worker, Redis
        stack_pids = [worker.pid, web.pid, bench.redis_pid, *(p.pid for p in psutil.Process(web.pid).children())]
        runs, pairs = [], 0
        # a pair that other users of the host disturbed is run again while the time budget lasts
        while pairs < args.pairs or (clean_pairs(runs) < args.pairs and pairs < args.pairs + 2
                                     and time.monotonic() - started < args.budget):
            runs.append(run_quiet(bench, config_path, args.seconds, stack_pids))
            runs.append(run_stack(bench, url, config, args.seconds, worker.pid, stack_pids))
            pairs += 1
            print(" ".join(f"{r['kind']}: {r['steps_per_s']:.3f} steps/s" for r in runs[-2:]), file=sys.stderr, flush=True)
        if worker.poll() is not None:
            raise RuntimeError("the worker died:\n" + bench.log_tail("worker"))
    report(runs, args, time.monotonic() - started)


def fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def is_clean(run: dict) -> bool:
    return run["foreign_cpu_share"] is not None and run["foreign_cpu_share"] < FOREIGN_LIMIT


def clean_pairs(runs: list[dict]) -> int:
    return sum(is_clean(a) and is_clean(b) for a, b in zip(runs[::2], runs[1::2]))


def report(runs: list[dict], args, elapsed: float) -> None:
    pairs = list(zip(runs[::2], runs[1::2]))
    clean = [(a, b) for a, b in pairs if is_clean(a) and is_clean(b)]
    used = clean or pairs  # no clean pair: all of them, flagged as disturbed
    ratios = [b["steps_per_s"] / a["steps_per_s"] for a, b in used]
    ratio = statistics.mean(b["steps_per_s"] for _, b in used) / statistics.mean(a["steps_per_s"] for a, _ in used)
    share_b = statistics.mean(b["stack_cpu_share"] or 0 for _, b in pairs)
    rows = [[f"{i + 1}", "A: trainer, no callbacks" if r["kind"] == "A" else f"B: full stack, {CLIENTS} SSE clients",
             f"{r['first_step']}→{r['last_step']}", f"{r['seconds']:.2f}", f"{r['steps_per_s']:.3f}",
             fmt(r["trainer_cpu_s_per_step"], "{:.3f}"), fmt(r["stack_cpu_share"] and 100 * r["stack_cpu_share"], "{:.2f}"),
             fmt(r["foreign_cpu_share"] and 100 * r["foreign_cpu_share"], "{:.1f}") + ("" if is_clean(r) else " ✗")]
            for i, r in enumerate(runs)]
    print(f"\n## {NAME} (batch {args.batch_size}, {args.seconds:g} s of steps a run, sampling NEVER"
          f"{', OMP_WAIT_POLICY=PASSIVE' if args.omp_passive else ''})\n")
    print(table(["#", "run", "steps", "s", "steps/s", "trainer CPU s/step", "product's other processes, % of machine",
                 "foreign load, % of machine"], rows))
    verdict = (f"{len(clean)} of {len(pairs)} pairs undisturbed (foreign load < {100 * FOREIGN_LIMIT:.0f}% in both runs)"
               if clean else f"NO undisturbed pair (✗: foreign load >= {100 * FOREIGN_LIMIT:.0f}%): inconclusive")
    print(f"\nsteps/s ratio B/A: **{ratio:.3f}** (goal >= 0.99; means over the pairs used; per pair: "
          + ", ".join(f"{x:.3f}" for x in ratios) + f"); {verdict}.\n"
          f"While B trained, the product's other processes (worker, web, Redis, 10 SSE clients) used "
          f"{100 * share_b:.2f}% of the machine; load average {os.getloadavg()[0]:.1f}; took {elapsed:.0f} s")
    path = write_results(NAME + ("_omp_passive" if args.omp_passive else ""), {
        "benchmark": NAME, "machine": machine(), "batch_size": args.batch_size, "seconds_per_run": args.seconds,
        "omp_passive": args.omp_passive,
        "clients": CLIENTS, "runs": runs, "ratio_b_over_a": ratio, "pair_ratios_used": ratios,
        "clean_pairs": len(clean), "pairs": len(pairs), "foreign_limit": FOREIGN_LIMIT,
        "stack_cpu_share_during_b": share_b, "goal": "ratio_b_over_a >= 0.99", "met": ratio >= 0.99,
        "conclusive": bool(clean), "loadavg_at_end": os.getloadavg(), "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--quiet-child":
        quiet_child(*sys.argv[2:6])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="A/B pairs (ABAB...)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8, help="steps a run takes before it is stopped")
    parser.add_argument("--budget", type=float, default=75, help="no extra pair is started after this (s)")
    parser.add_argument("--omp-passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE for A and B alike (not the default; ~3x slower here, see README)")
    main(parser.parse_args())
