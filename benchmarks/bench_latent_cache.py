"""Training speed with latent caching against without it, on the same config, in one process.

The demo model and dataset (tiny SD 1.x, 64 px, batch 4) are built in a temp workspace; the same
config then trains with ``latent_caching`` true and false, alternating (--pairs). Steps/s counts
the steps between the first and the last progress event over the time between them, so model
loading and filling the cache are excluded: it is the steady-state speed of the training loop.
Without caching every step loads, resizes and VAE-encodes its images and encodes its captions.
As in a real dataset, the source images are larger than the training resolution: the demo's
64 px shapes are rewritten as --source-size px JPEG files (0 keeps the 64 px PNGs).

    .venv/bin/python benchmarks/bench_latent_cache.py [--pairs 2 --epochs 4 --source-size 512]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "bench_latent_cache.json"


def steps_per_second(workspace: Path, config: dict, run_dir: Path) -> float:
    from webapp.trainer.builtin import BuiltinBackend
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands
    times = []

    class Clock(TrainCallbacks):
        def progress(self, **data):
            times.append(time.perf_counter())

    backend = BuiltinBackend(config, Clock(), TrainCommands(), run_dir=run_dir, base_dir=workspace)
    backend.start()
    backend.train()
    backend.end()
    return (len(times) - 1) / (times[-1] - times[0])


def enlarge(folder: Path, size: int) -> None:
    from PIL import Image
    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(
                path.with_suffix(".jpg"), quality=92)
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--source-size", type=int, default=512)
    args = parser.parse_args()
    import torch
    from webapp.trainer.demo import build_demo
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        build_demo(root / "workspace", root / "configs")
        config = json.loads((root / "configs" / "demo.json").read_text())
        if args.source_size:
            enlarge(root / "workspace" / "datasets" / "shapes", args.source_size)
        config.update(epochs=args.epochs, sample_after_unit="NEVER", backup_before_save=False,
                      clear_cache_before_training=True)
        speeds = {True: [], False: []}
        for pair in range(args.pairs):
            for caching in (True, False):
                run_dir = root / f"run-{pair}-{caching}"
                speeds[caching].append(steps_per_second(root / "workspace", {**config, "latent_caching": caching}, run_dir))
    cached, uncached = statistics.median(speeds[True]), statistics.median(speeds[False])
    result = {"benchmark": "latent_cache", "steps_per_s_cached": round(cached, 2),
              "steps_per_s_uncached": round(uncached, 2), "ratio": round(cached / uncached, 2),
              "runs": {"cached": speeds[True], "uncached": speeds[False]},
              "config": {"model": "tiny-sd15 (demo)", "resolution": 64, "batch_size": config["batch_size"],
                         "images": 24, "source_size": args.source_size or 64, "epochs": args.epochs,
                         "pairs": args.pairs},
              "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"| latent caching | steps/s |\n|---|---|\n| on | {cached:.2f} |\n| off | {uncached:.2f} |")
    print(f"ratio with/without caching: {cached / uncached:.2f}x (goal >= 1.5x); written {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
