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
Both arms train the same config (packed once here, as the web packs it, so B's web stores it as it
is) with the same torch threads: OTWEB_TRAINER_THREADS (--threads) is set for both, and each run
records what its trainer reported (make_backend's first event) with its OS threads, nice value and
CPUs; the report says so if the arms differ.
Both exclude model loading and the final save; the fixed time window keeps the run length in
seconds whatever the demo model's speed. CPU seconds of the trainer and of the product's other
processes (worker and its idle warm trainer, web, Redis, the SSE clients) are sampled at 20 Hz from
outside and read off at the first and the last step's time: the trainer's CPU seconds per step in
each arm, and the share of the machine the rest took. The whole machine's busy time is sampled too:
what neither the trainer, the product nor this script used is foreign load (other users of a
shared host), recorded per run with the load average. Before each run the benchmark waits until
the product's processes are idle (the worker's next warm trainer imports torch after every B).
Runs go in ABBA order (A B, B A, A B, ...: --pairs, default 10, of --seconds, default 15, of steps
each), so that a machine that slows or speeds up over the minutes weighs on both arms alike. Figures
(overhead_stats.py): per pair the trainer's CPU seconds per step B/A (primary: user + system of the
trainer process and all its threads, from /proc; what other users of a shared machine change least)
and the steps/s ratio B/A (secondary: wall clock); the median over the undisturbed pairs (foreign
load < 5% in both runs; over all pairs if none is) with IQR, min-max and a bootstrap 95% interval of
the median; a ratio is "within X %" only when that interval is. The UI's own CPU (worker, web,
Redis, SSE clients) is counted apart, per trainer step.

    .venv/bin/python benchmarks/bench_training_overhead.py [--pairs 10 --seconds 15 --threads auto]
    (10 pairs of 15 s: about 9 minutes on the 2-core VM; --pairs 2 --seconds 5 checks it end to end)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common import (PY, Bench, SSEClients, api, build_demo, machine, stop, wait_demo, wait_http,
                    write_results)
from cpu import CpuSampler
from overhead_stats import readme_line, runs_table, summarise, verdict_lines

NAME = "bench_training_overhead"
CLIENTS = 10
IDLE_CPU_S = 0.05  # the product's processes are idle when they use less than this in a second


def short_config(config_dir: Path, workspace: Path, batch_size: int) -> dict:
    """The demo config, packed as the web packs a config it is given (B's web then stores it as it
    is, so A trains the very config B trains: a partial config would get a fresh concept seed)."""
    from webapp.config import paths
    from webapp.config.checks import validate
    from webapp.config.loading import settle_default_samples
    config = json.loads((config_dir / "demo.json").read_text())
    # samples and backups would dominate the step time: off. Epochs: more than a run reaches, as
    # every run is stopped (the stop command, as the UI's Stop) a fixed time after its first step
    config.update(batch_size=batch_size, epochs=10_000, sample_after=0, sample_after_unit="NEVER",
                  backup_after=0, backup_after_unit="NEVER", save_every=0, save_every_unit="NEVER")
    report = validate(config, workspace, roots=paths.read_roots(workspace, config_dir))
    if not report.valid:
        raise RuntimeError(f"the demo config does not validate: {report.errors}")
    return settle_default_samples(report.packed, workspace)


def process_facts(pid: int) -> dict:
    """What decides how a trainer process competes for the cores, seen from outside."""
    proc = psutil.Process(pid)
    return {"os_threads": proc.num_threads(), "nice": proc.nice(), "cpus": sorted(proc.cpu_affinity())}


def quiet_child(config_path: str, workspace: str, seconds: str, out: str) -> None:
    """Baseline: the backend with callbacks that do no work but read the clock at each step and
    stop the run `seconds` after the first (and note the threads make_backend reports)."""
    from webapp.trainer.backend_factory import make_backend
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands

    commands = TrainCommands()

    class StepClock(TrainCallbacks):
        first = last = threads = None

        def log(self, text, level="info", **extra):
            self.threads = extra.get("torch_threads", self.threads)

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
        facts = {"torch_threads": clock.threads, **process_facts(os.getpid())}
    finally:
        backend.end()
    (s0, t0), (s1, t1) = clock.first, clock.last
    Path(out).write_text(json.dumps({"first_step": s0, "last_step": s1, "t0": t0, "t1": t1, "seconds": t1 - t0,
                                     "trainer": facts}))


def trainer_of(worker_pid: int):
    """The worker's spawned trainer process (not multiprocessing's resource tracker)."""
    def find():
        return [c.pid for c in psutil.Process(worker_pid).children() if "spawn_main" in " ".join(c.cmdline())]
    return find


def product_pids(stack_pids: list[int], worker_pid: int, but=()) -> list[int]:
    """The product's processes: the stack and whatever the worker started (its idle warm trainer,
    multiprocessing's resource tracker), except the trainer being measured."""
    try:
        children = [c.pid for c in psutil.Process(worker_pid).children(recursive=True)]
    except psutil.Error:
        children = []
    return stack_pids + [pid for pid in children if pid not in but]


def settle(stack_pids: list[int], worker_pid: int, timeout: float = 90) -> None:
    """Wait until the product's processes are idle: after a B run the worker starts its next warm
    trainer, which imports torch for seconds; an A run started meanwhile would share the cores."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        now = {}
        for pid in product_pids(stack_pids, worker_pid):
            with contextlib.suppress(psutil.Error):
                times = psutil.Process(pid).cpu_times()
                now[pid] = times.user + times.system
        # a process new since the last look counts with all it has used: it is starting
        if last is not None and sum(cpu - last.get(pid, 0.0) for pid, cpu in now.items()) < IDLE_CPU_S:
            return
        last = now
        time.sleep(1)
    print("the product's processes were still busy after the timeout", file=sys.stderr)


def measure(trainer_pids, others, wait) -> dict:
    """Run wait() (which returns the step timing) while sampling the CPU of the trainer, of the
    product's other processes, of this process and of the whole machine (the rest: foreign load)."""
    sampler = CpuSampler({"trainer": trainer_pids, "stack": others,
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
            # the UI's own CPU (worker, web, Redis, SSE clients) per step the trainer made
            "ui_cpu_s_per_step": used["stack"] and used["stack"] / steps,
            # the share of the machine the product's other processes took while the trainer stepped
            "stack_cpu_share": used["stack"] and used["stack"] / capacity,
            # ... and the share that processes outside this benchmark took (other users of the host)
            "foreign_cpu_share": foreign and max(0.0, foreign / capacity), "loadavg": os.getloadavg()}


def run_quiet(bench: Bench, config_path: Path, seconds: float, stack_pids: list[int], worker_pid: int) -> dict:
    out = bench.tmp / f"quiet-{time.monotonic_ns()}.json"
    child = subprocess.Popen([PY, __file__, "--quiet-child", str(config_path), str(bench.workspace), str(seconds),
                              str(out)],
                             env=bench.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.callback(stop, child)

    def wait():
        if child.wait(timeout=seconds + 150) != 0:
            raise RuntimeError(f"the quiet trainer exited with {child.returncode}")
        return json.loads(out.read_text())
    return {"kind": "A", **measure(lambda: [child.pid], lambda: product_pids(stack_pids, worker_pid), wait)}


def run_stack(bench: Bench, url: str, config: dict, seconds: float, worker_pid: int, stack_pids: list[int]) -> dict:
    clients = SSEClients(bench, url, "/api/events", CLIENTS, "--until-run-end", max_s=seconds + 150)
    clients.wait_ready()
    run_id = api(url, "POST", "/api/training/start", {"config": config})["run_id"]
    seen, trainer = {}, trainer_of(worker_pid)

    def wait():
        clients.wait_line("PROGRESS", timeout=120)
        facts = process_facts(trainer()[0])
        time.sleep(seconds)
        api(url, "POST", "/api/training/stop", {})
        result = clients.results(timeout=160)
        records = result["records"]
        progress = sorted((r[4], r[3]) for r in records[0] if r[1] == "progress" and r[4] is not None)
        (s0, t0), (s1, t1) = progress[0], progress[-1]
        seen.update(events_per_client=[len(r) for r in records], progress_events_seen=len(progress))
        return {"first_step": s0, "last_step": s1, "t0": t0, "t1": t1, "seconds": t1 - t0, "trainer": facts}
    result = measure(trainer, lambda: product_pids(stack_pids + [clients.proc.pid], worker_pid, trainer()), wait)
    state = api(url, "GET", "/api/training/status")["run"]
    reported = [e["data"].get("torch_threads") for e in api(url, "GET", f"/api/runs/{run_id}/events")["events"]
                if e["event"] == "log" and "torch_threads" in e["data"]]
    result["trainer"]["torch_threads"] = reported[0] if reported else None
    as_run = api(url, "GET", f"/api/runs/{run_id}")["config"]
    return {"kind": "B", "run_id": run_id, "state": state["state"] if state["id"] == run_id else "?", **result,
            "config_as_a": as_run == config, "product_speed": (state.get("progress") or {}).get("speed"), **seen}


def main(args) -> None:
    started = time.monotonic()
    with Bench() as bench:
        if args.threads != "auto":  # inherited by the quiet trainer and by the worker's trainer alike
            bench.env["OTWEB_TRAINER_THREADS"] = args.threads
        if args.omp_passive:
            bench.env["OMP_WAIT_POLICY"] = "PASSIVE"
        demo = build_demo(bench)
        bench.redis()
        worker = bench.worker()
        web, url = bench.web()
        wait_http(url + "/api/health", proc=web)
        wait_demo(bench, demo, timeout=300)  # the demo model: ~15 s on a quiet VM, minutes on a busy one
        config = short_config(bench.config_dir, bench.workspace, args.batch_size)
        config_path = bench.tmp / "short.json"
        config_path.write_text(json.dumps(config))
        # the worker's own CPU (not its trainer's), gunicorn's master and worker, Redis
        stack_pids = [worker.pid, web.pid, bench.redis_pid, *(p.pid for p in psutil.Process(web.pid).children())]
        runs = []
        arms = {"A": lambda: run_quiet(bench, config_path, args.seconds, stack_pids, worker.pid),
                "B": lambda: run_stack(bench, url, config, args.seconds, worker.pid, stack_pids)}
        for pair in range(args.pairs):
            for kind in ("AB" if pair % 2 == 0 else "BA"):  # ABBA: a drift of the machine hits both arms alike
                settle(stack_pids, worker.pid)
                runs.append(arms[kind]())
            print(f"pair {pair + 1}: " + " ".join(f"{r['kind']}: {r['steps_per_s']:.3f} steps/s" for r in runs[-2:]),
                  file=sys.stderr, flush=True)
        if worker.poll() is not None:
            raise RuntimeError("the worker died:\n" + bench.log_tail("worker"))
    report(runs, args, time.monotonic() - started)


def report(runs: list[dict], args, elapsed: float) -> None:
    summary = summarise(runs)
    print(f"\n## {NAME} ({machine()['time']}; batch {args.batch_size}, {args.pairs} pairs of {args.seconds:g} s "
          f"of steps, sampling NEVER, OTWEB_TRAINER_THREADS={args.threads}"
          f"{', OMP_WAIT_POLICY=PASSIVE' if args.omp_passive else ''})\n")
    print(runs_table(runs, CLIENTS))
    print("\n" + "\n".join(verdict_lines(summary)))
    if not all(r.get("config_as_a", True) for r in runs):
        print("B's web stored a config other than A's: the arms did not train the same config")
    print(f"load average at the end {os.getloadavg()[0]:.2f}; took {elapsed:.0f} s")
    print("\nfor the README: " + readme_line(summary, runs, machine()["time"][:10]))
    path = write_results(NAME + ("_omp_passive" if args.omp_passive else "") + args.tag, {
        "benchmark": NAME, "machine": machine(), "batch_size": args.batch_size, "seconds_per_run": args.seconds,
        "pairs_asked": args.pairs, "threads_setting": args.threads, "omp_passive": args.omp_passive,
        "clients": CLIENTS, "summary": summary, "runs": runs, "elapsed_s": elapsed})
    print(f"results: {path}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--quiet-child":
        quiet_child(*sys.argv[2:6])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10, help="A/B pairs, in ABBA order")
    parser.add_argument("--seconds", type=float, default=15, help="steps a run takes before it is stopped")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", default="auto",
                        help="OTWEB_TRAINER_THREADS for both arms (default auto: the cores but one)")
    parser.add_argument("--tag", default="", help="appended to the results file's name (e.g. _smoke)")
    parser.add_argument("--omp-passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE for A and B alike (not the default; ~3x slower here, see README)")
    main(parser.parse_args())
