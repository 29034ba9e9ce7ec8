"""Scaling efficiency of data parallelism on GPUs: an SD 1.5 LoRA at 512 px on 1 GPU and on 2
(NCCL), the same per-GPU batch; efficiency = samples/s on 2 / (2 × samples/s on 1); goal ≥ 0.9.

    .venv/bin/python benchmarks/bench_ranks_gpu.py --model /models/sd15 [--gpus 0,1] [--batch 4]
    .venv/bin/python benchmarks/bench_ranks_gpu.py --smoke     # the tiny demo model on 2 CPU ranks

``--model`` is what ``base_model_name`` takes (a diffusers folder or a .safetensors checkpoint).
The images are generated (noise with shapes, 512 px, captioned), cached as latents first, so the
figure is the training step's.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from pathlib import Path

from common import BENCH_DIR, PY, ROOT, machine, table, write_results
from ranks import HEADERS, measure, rows, scaling

GOAL = 0.9


def synthetic_images(folder: Path, count: int, size: int) -> None:
    from PIL import Image, ImageDraw
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for index in range(count):
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            box = sorted(rng.sample(range(size), 2)), sorted(rng.sample(range(size), 2))
            draw.ellipse((box[0][0], box[1][0], box[0][1], box[1][1]),
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        image.save(folder / f"{index:03}.png")
        (folder / f"{index:03}.txt").write_text(f"a picture of shapes, number {index}")


def gpu_config(args, workspace: Path) -> dict:
    synthetic_images(workspace / "images", args.images, 512)
    return {"__version": 10, "model_type": "STABLE_DIFFUSION_15", "training_method": "LORA",
            "base_model_name": args.model, "train_device": "cuda", "train_dtype": "FLOAT_16",
            "batch_size": args.batch, "resolution": "512", "learning_rate": 1e-4, "lora_rank": 16,
            "epochs": args.epochs, "sample_after_unit": "NEVER", "backup_after_unit": "NEVER",
            "backup_before_save": False, "output_model_destination": "models/bench.safetensors",
            "concepts": [{"path": str(workspace / "images"), "name": "shapes"}],
            "cache_dir": str(workspace / "cache")}


def smoke_config(workspace: Path, configs: Path, args) -> dict:
    subprocess.run([PY, str(BENCH_DIR / "common.py"), "build-demo", str(workspace), str(configs)],
                   cwd=ROOT, check=True)
    config = json.loads((configs / "demo.json").read_text())
    config.update(batch_size=2, train_device="cpu", epochs=2, sample_after_unit="NEVER",
                  backup_after_unit="NEVER", backup_before_save=False)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="SD 1.5 base model (diffusers folder or checkpoint)")
    parser.add_argument("--gpus", default="0,1", help="the GPUs of the multi-GPU run")
    parser.add_argument("--batch", type=int, default=4, help="batch size per GPU")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="the tiny demo model on 2 CPU ranks")
    args = parser.parse_args()
    if not args.smoke and not args.model:
        parser.error("--model is required (or --smoke)")
    gpus = [int(g) for g in args.gpus.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-ranks-gpu-") as tmp:
        workspace = Path(tmp) / "workspace"
        config = smoke_config(workspace, Path(tmp) / "configs", args) if args.smoke else gpu_config(args, workspace)
        results = []
        for world in (1, len(gpus)):
            run_config = dict(config)
            if not args.smoke and world > 1:
                run_config["device_indexes"] = args.gpus  # measure() numbers them 0..N-1 otherwise
            results.append(measure(run_config, world, workspace, workspace / "runs" / f"ranks{world}"))
    print(table(HEADERS, rows(results)))
    efficiency = scaling(results)
    verdict = "meets" if efficiency >= GOAL else "misses"
    print(f"\nscaling efficiency on {len(gpus)} {'CPU ranks (smoke)' if args.smoke else 'GPUs'}: "
          f"{efficiency:.2f} ({verdict} the goal of {GOAL})")
    write_results("bench_ranks_gpu" + ("_smoke" if args.smoke else ""),
                  {"machine": machine(), "results": results, "scaling_efficiency": efficiency})


if __name__ == "__main__":
    main()
