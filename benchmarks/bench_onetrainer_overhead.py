"""Driving the real OneTrainer through the web against OneTrainer's own CLI, same config, same box.

A: the product's full path: the web (gunicorn + gevent), a worker in OneTrainer's environment
   (.venv-onetrainer) and its trainer process hosting OneTrainer from ../shared/third_party, with
   the adapter's callbacks, commands and event bridge; a start through POST /api/training/start.
B: OneTrainer's own `scripts/train.py --config-path` in the same environment, no product code.
Both train the tiny demo LoRA on the CPU with the same config (absolute paths, no samples, no
backups), alternated A B A B. Speed is read the same way for both, from the training loss that
OneTrainer itself writes to TensorBoard each step (its wall time): steps/s over the steps after the
first epoch (so loading, caching and warm-up count in neither). Ratio = A / B. Goal: >= 0.99.

    .venv/bin/python benchmarks/bench_onetrainer_overhead.py [--pairs 2] [--epochs 6]
(needs ./scripts/setup_onetrainer.sh, which the test command runs)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Bench, free_port, machine, table, wait_http, write_results  # noqa: E402
from support.polling import wait_for  # noqa: E402

OT_PYTHON = ROOT / ".venv-onetrainer/bin/python"
CHECKOUT = Path(os.environ.get("ONETRAINER_DIR", ROOT.parent / "shared/third_party/OneTrainer")).resolve()


def steps_per_second(tensorboard_dir: Path, skip: int) -> tuple[float, int]:
    """From the loss scalars OneTrainer wrote (wall time per step), after ``skip`` steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    times = []
    for events in sorted(tensorboard_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        tag = next((t for t in accumulator.Tags()["scalars"] if t.startswith("loss/train_step")), None)
        if tag:
            times += [(e.step, e.wall_time) for e in accumulator.Scalars(tag)]
    times = sorted(times)[skip:]
    if len(times) < 3:
        raise RuntimeError(f"too few steps in {tensorboard_dir}: {len(times)}")
    return (times[-1][0] - times[0][0]) / (times[-1][1] - times[0][1]), len(times)


def the_config(bench: Bench, epochs: int) -> dict:
    config = json.loads((bench.config_dir / "demo.json").read_text())
    workspace = bench.workspace
    config.update(backend="onetrainer", train_device="cpu", temp_device="cpu", output_model_format="DIFFUSERS_LORA",
                  epochs=epochs, sample_after_unit="NEVER", sample_before_training=False, backup_after_unit="NEVER",
                  save_every_unit="NEVER", tensorboard=True, tensorboard_port=free_port(), base_model_name=str(workspace / config["base_model_name"]),
                  samples=[])
    for concept in config["concepts"]:
        concept["path"] = str(workspace / concept["path"])
    return config


def through_the_web(bench: Bench, url: str, config: dict, epoch_steps: int) -> float:
    run_id = requests.post(url + "/api/training/start", json={"config": config}, timeout=30).json()["run_id"]
    run = wait_for(lambda: (r := requests.get(f"{url}/api/runs/{run_id}", timeout=10).json()["run"])["state"]
                   not in ("queued", "running") and r, 900, f"run {run_id} to end", every=0.5)
    if run["state"] != "completed":
        raise RuntimeError(f"run {run_id} {run['state']}: {run.get('reason')}")
    return steps_per_second(bench.workspace / "runs" / str(run_id) / "onetrainer", epoch_steps)[0]


def through_the_cli(bench: Bench, config: dict, epoch_steps: int, index: int) -> float:
    folder = bench.tmp / f"cli-{index}"
    folder.mkdir()
    # from the checkout, as its own scripts expect (its factories find their modules from there)
    config = {**config, "workspace_dir": str(folder / "workspace"), "cache_dir": str(folder / "cache"),
              "output_model_destination": str(folder / "lora.safetensors")}
    (folder / "config.json").write_text(json.dumps(config))
    with open(folder / "train.log", "wb") as log:
        done = subprocess.run([str(OT_PYTHON), str(CHECKOUT / "scripts/train.py"), "--config-path",
                               str(folder / "config.json")], cwd=CHECKOUT, stdout=log, stderr=subprocess.STDOUT,
                              timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"OneTrainer's CLI failed: {(folder / 'train.log').read_text()[-2000:]}")
    return steps_per_second(folder / "workspace", epoch_steps)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    if not OT_PYTHON.is_file():
        sys.exit(f"{OT_PYTHON} is missing: run ./scripts/setup_onetrainer.sh")
    with Bench() as bench:
        bench.env["ONETRAINER_DIR"] = str(CHECKOUT)
        subprocess.run([str(OT_PYTHON), "-m", "webapp.cli", "demo"], cwd=ROOT, env=bench.env, check=True,
                       stdout=subprocess.DEVNULL)
        bench.redis()
        bench.spawn("worker", [str(OT_PYTHON), "-m", "webapp.cli", "worker"])
        _, url = bench.web()
        wait_http(url + "/api/health", 60)
        config = the_config(bench, args.epochs)
        epoch_steps = 6  # 24 images at batch 4
        pairs = []
        for index in range(args.pairs):
            web = through_the_web(bench, url, config, epoch_steps)
            cli = through_the_cli(bench, config, epoch_steps, index)
            pairs.append({"web_steps_s": web, "cli_steps_s": cli, "ratio": web / cli})
            print(pairs[-1], flush=True)
    ratios = [p["ratio"] for p in pairs]
    print(table(["pair", "web steps/s", "CLI steps/s", "ratio"],
                [[str(i + 1), f"{p['web_steps_s']:.3f}", f"{p['cli_steps_s']:.3f}", f"{p['ratio']:.3f}"]
                 for i, p in enumerate(pairs)]))
    print(f"median ratio {statistics.median(ratios):.3f}")
    print(f"results: {write_results('bench_onetrainer_overhead', {'machine': machine(), 'pairs': pairs})}")


if __name__ == "__main__":
    main()
