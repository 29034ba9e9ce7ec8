"""How long sampling pauses a run: the same run with and without scheduled samples.

The built-in backend in a child process of its own (as `otweb train` builds it, through
make_backend), on the tiny demo model: 2 epochs of 6 steps (batch 4). A: sampling off. B: the
demo's two sample prompts (10 diffusion steps, 64 px) every 4 steps, i.e. 3 sampling pauses of 2
images each. The timed part is train() (the loop and the final save; model loading and the latent
cache are outside). Each sampling pause is also timed directly, from the `sampling` status to the
next `training` status. Runs alternate A B A B (--pairs); the ratio is B / A per pair.
Times are the child's CPU seconds (all its threads), which other load on a shared host disturbs
less than wall time (the wall times are in the JSON too). On a shared host even CPU time is
inflated while others load it (threads spin), so the headline figures use the fastest run of each
kind (min A, min B: the least disturbed), with every pair kept in the JSON.

    .venv/bin/python benchmarks/bench_sampling_pause.py [--pairs 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import PY, Bench, build_demo, machine, table, wait_demo, write_results

NAME = "bench_sampling_pause"
SAMPLE_EVERY = 4


def child(config_path: str, workspace: str, out: str) -> None:
    from webapp.trainer.backend_factory import make_backend
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands

    class Clock(TrainCallbacks):
        def __init__(self):
            self.pauses, self.images, self._since = [], 0, None

        def status(self, text):
            now = time.process_time()
            if text == "sampling":
                self._since = now
            elif self._since is not None:
                self.pauses.append(now - self._since)
                self._since = None

        def sample(self, kind, **sample):
            self.images += 1

    config = json.loads(Path(config_path).read_text())
    run_dir = Path(workspace) / "runs" / f"bench-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    clock = Clock()
    backend = make_backend(config, clock, TrainCommands(), run_dir=run_dir, base_dir=Path(workspace))
    try:
        backend.start()
        t0, c0 = time.perf_counter(), time.process_time()
        backend.train()
        seconds, wall = time.process_time() - c0, time.perf_counter() - t0
        steps = backend.global_step
    finally:
        backend.end()
    Path(out).write_text(json.dumps({"train_s": seconds, "train_wall_s": wall, "steps": steps, "pauses_s": clock.pauses,
                                     "images": clock.images}))


def run_child(bench: Bench, config: dict, label: str) -> dict:
    path = bench.tmp / f"{label}.json"
    path.write_text(json.dumps(config))
    out = bench.tmp / f"{label}-out.json"
    subprocess.run([PY, __file__, "--child", str(path), str(bench.workspace), str(out)], cwd=bench.tmp,
                   env=bench.env, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    started = time.monotonic()
    with Bench() as bench:
        wait_demo(bench, build_demo(bench))
        demo = json.loads((bench.config_dir / "demo.json").read_text())
        base = {**demo, "epochs": 3, "backup_after_unit": "NEVER", "save_every_unit": "NEVER",
                "clear_cache_before_training": False, "tensorboard": False}
        plain = {**base, "sample_after": 0, "sample_after_unit": "NEVER"}
        sampled = {**base, "sample_after": SAMPLE_EVERY, "sample_after_unit": "STEP"}
        run_child(bench, plain, "warm-cache")  # fills the latent cache once, untimed
        pairs = []
        for n in range(args.pairs):
            a, b = run_child(bench, plain, f"a{n}"), run_child(bench, sampled, f"b{n}")
            paused = sum(b["pauses_s"])
            pairs.append({"without": a, "with": b, "ratio": b["train_s"] / a["train_s"],
                          "pause_share": paused / b["train_s"],
                          # B's time outside its pauses against A: 1.0 when sampling costs only its pauses
                          "ratio_outside_pauses": (b["train_s"] - paused) / a["train_s"]})
    pauses = [p for pair in pairs for p in pair["with"]["pauses_s"]]
    images_per_pause = pairs[0]["with"]["images"] / max(1, len(pairs[0]["with"]["pauses_s"]))
    best_a = min(p["without"]["train_s"] for p in pairs)
    best_b = min(pairs, key=lambda p: p["with"]["train_s"])["with"]
    step_s = best_a / pairs[0]["without"]["steps"]
    result = {
        "machine": machine(), "wall_s": time.monotonic() - started, "steps": pairs[0]["without"]["steps"],
        "sample_every_steps": SAMPLE_EVERY, "images_per_pause": images_per_pause,
        "diffusion_steps": demo["samples"][0]["diffusion_steps"], "pairs": pairs,
        "ratio_best": best_b["train_s"] / best_a, "pause_s_best_run": statistics.median(best_b["pauses_s"]),
        "ratio_outside_pauses_best": (best_b["train_s"] - sum(best_b["pauses_s"])) / best_a,
        "ratio_median": statistics.median(p["ratio"] for p in pairs),
        "pause_share_median": statistics.median(p["pause_share"] for p in pairs),
        "ratio_outside_pauses_median": statistics.median(p["ratio_outside_pauses"] for p in pairs),
        "pause_s_median": statistics.median(pauses), "per_image_s": statistics.median(pauses) / images_per_pause,
        "train_step_s_median": step_s,
    }
    print(table(["pair", "without sampling (CPU s)", "with sampling (CPU s)", "ratio", "outside pauses", "pauses (CPU s)"],
                [[n + 1, f"{p['without']['train_s']:.2f}", f"{p['with']['train_s']:.2f}", f"{p['ratio']:.2f}",
                  f"{p['ratio_outside_pauses']:.2f}",
                  ", ".join(f"{x:.2f}" for x in p["with"]["pauses_s"])] for n, p in enumerate(pairs)]))
    pause = result["pause_s_best_run"]
    print(f"\nfastest runs: one sampling pause ({images_per_pause:.0f} images, {result['diffusion_steps']} steps "
          f"each) {pause:.2f} CPU s = {pause / step_s:.1f} training steps ({step_s * 1000:.0f} ms each); run "
          f"x{result['ratio_best']:.2f} with a pause every {SAMPLE_EVERY} steps; outside the pauses "
          f"x{result['ratio_outside_pauses_best']:.2f}")
    print(f"results: {write_results(NAME, result)}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        child(*sys.argv[2:5])
    else:
        main()
