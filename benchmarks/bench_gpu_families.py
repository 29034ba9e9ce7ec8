"""GPU check: LoRA training steps/s and peak CUDA memory of full-size SD 1.5 and SDXL, the built-in
trainer's step against a plain diffusers loop, in BFLOAT_16.

Full-size architectures with random weights, built from the published configs in sd_configs.py
(runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0: UNet, VAE, text
encoders), so nothing is downloaded; no tokenizer either: a batch is random latents of the
resolution's size and random text embeddings of the right shapes (SD 1.5: 77 x 768; SDXL: 77 x 2048,
a pooled 1280 and the six size/crop ids). SD 1.5 at 512 px batch 4, SDXL at 1024 px batch 1. Every
part sits on the GPU as in training (the trainer loads the whole model), frozen parts in bfloat16.

(a) built-in: the product's own pieces on a ModelParts of those modules: TrainSettings.from_config on
    a LoRA config (attn-only, rank/alpha --rank, AdamW, lr 1e-4, train_dtype and every weight_dtype
    BFLOAT_16), methods.setup_lora, model.cast_frozen_parts, methods.enable_gradient_checkpointing,
    optimizers.make_optimizer, the LR lambda of lr_schedule, Stepper; the step is Stepper.step.
(b) plain: the diffusers LoRA example's recipe (plain_loop.py): frozen parts cast to bfloat16,
    ``unet.add_adapter(LoraConfig(r, lora_alpha, init_lora_weights="gaussian",
    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))``, cast_training_params (adapter in
    float32), AdamW, a constant LR schedule, then per step noise, timesteps, add_noise, the UNet
    under bf16 autocast, MSE, backward, clip_grad_norm_ (1.0), step, LR step, zero_grad, loss.item().
Each case runs in a child process of its own (a clean CUDA context: peak memory per case, all
memory freed in between): --warmup steps, then --steps timed steps (cuda.synchronize around them).
Peak = torch.cuda.max_memory_allocated over warm-up and timed steps (the weights included).

    python benchmarks/bench_gpu_families.py                 # on a CUDA machine (~2-4 min on an H200)
    python benchmarks/bench_gpu_families.py --smoke         # CPU, tiny configs: the same code paths
    options: --families sd15,sdxl --warmup 3 --steps 20 --rank 16 --checkpointing off|on|both --budget 420
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sd_configs import FULL, SCHEDULER, SMOKE

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
NAME = "bench_gpu_families"
LEARNING_RATE = 1e-4
MODEL_TYPES = {"sd15": "STABLE_DIFFUSION_15", "sdxl": "STABLE_DIFFUSION_XL_10_BASE"}

# -- one case, in a child process ------------------------------------------------------------------

def build_modules(spec: dict, device):
    """UNet, VAE and text encoders with random weights, created on the device (fast init)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**spec["unet"])
        vae = AutoencoderKL(**spec["vae"])
        encoders = [(CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(**config))
                    for config, projection in spec["encoders"]]
    for module in (unet, vae, *encoders):
        module.requires_grad_(False)
        module.eval()
    return unet, vae, encoders


def make_batch(spec: dict, device, dtype):
    """Random latents, text embeddings (pooled text and size ids for SDXL) of the family's shapes."""
    import torch
    generator = torch.Generator(device="cpu").manual_seed(1)
    b, side = spec["batch"], spec["resolution"] // 8
    latents = torch.randn((b, 4, side, side), generator=generator)
    embeds = torch.randn((b, 77, spec["text_width"]), generator=generator)
    pooled = None if spec["pooled"] is None else torch.randn((b, spec["pooled"]), generator=generator)
    r = spec["resolution"]
    ids = None if spec["pooled"] is None else torch.tensor([[r, r, 0, 0, r, r]] * b, dtype=torch.float32)
    move = (lambda t: None if t is None else t.to(device, dtype))
    return move(latents), move(embeds), move(pooled), None if ids is None else ids.to(device)


def builtin_case(spec: dict, family: str, device, rank: int, checkpointing: bool, workdir: Path):
    """Returns step() and what trains, set up as BuiltinBackend._set_up_training does."""
    import torch
    from diffusers import DDPMScheduler

    from webapp.trainer.builtin import methods
    from webapp.trainer.builtin.conditioning import TextConditions
    from webapp.trainer.builtin.families import FAMILIES, ModelParts
    from webapp.trainer.builtin.lr_schedule import lr_factor
    from webapp.trainer.builtin.device import autocast_dtype, cast_frozen_parts
    from webapp.trainer.builtin.optimizers import make_optimizer
    from webapp.trainer.builtin.stepper import Stepper
    from webapp.config.builtin.train_settings import TrainSettings

    bf16 = {"weight_dtype": "BFLOAT_16"}
    config = {
        "__version": 11, "training_method": "LORA", "model_type": MODEL_TYPES[family],
        "base_model_name": "random-weights", "output_model_destination": "unused.safetensors",
        "concepts": [{"name": "random", "path": "random", "enabled": True}],
        "resolution": str(spec["resolution"]), "batch_size": spec["batch"], "learning_rate": LEARNING_RATE,
        "learning_rate_scheduler": "CONSTANT", "learning_rate_warmup_steps": 0, "epochs": 1, "seed": 42,
        "train_dtype": "BFLOAT_16", "train_device": str(device), "peft_type": "LORA", "lora_rank": rank,
        "lora_alpha": float(rank), "layer_filter_preset": "attn-only", "layer_filter": "",
        "optimizer": {"__version": 0, "optimizer": "ADAMW"},
        "unet": {"train": True, "gradient_checkpointing": checkpointing, **bf16},
        "text_encoder": {"train": False, **bf16}, "text_encoder_2": {"train": False, **bf16}, "vae": bf16,
    }
    settings = TrainSettings.from_config(config, workdir)
    unet, vae, encoders = build_modules(spec, device)
    parts = ModelParts(family=FAMILIES[family], tokenizers=[None] * len(encoders), text_encoders=encoders,
                       vae=vae, unet=unet, scheduler=DDPMScheduler(**SCHEDULER), path=Path("random-weights"))
    groups = methods.setup_lora(parts, settings, steps_per_epoch=1000)
    trained = {g.name for g in groups}
    parts.unet.train()
    amp = autocast_dtype(device, settings.train_dtype)
    notes = cast_frozen_parts(parts, settings, trained, amp)
    methods.enable_gradient_checkpointing(parts, settings, groups)
    options = settings.options
    optimizer = make_optimizer(options.optimizer, options.optimizer_settings, [
        {"params": list(g.params.values()), "lr": g.learning_rate, "name": g.name} for g in groups])
    total = 10_000
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, [
        (lambda step: lr_factor(step, settings.learning_rate_scheduler, settings.learning_rate_warmup_steps,
                                total, options.learning_rate_cycles)) for _ in groups])
    noise_rng = torch.Generator(device=device).manual_seed(settings.seed + 1)
    stepper = Stepper(parts, settings, groups, optimizer, lr_scheduler, device, amp, noise_rng)
    latents, embeds, pooled, ids = make_batch(spec, device, torch.float32)  # the cache holds float32
    batch = (latents, TextConditions(embeds, pooled), ids, torch.ones(spec["batch"], device=device))
    params = [p for g in groups for p in g.params.values()]
    return (lambda: stepper.step(batch, last_batch=False)), unet, params, notes


def plain_case(spec: dict, family: str, device, rank: int, checkpointing: bool):
    """Returns step() and what trains: the diffusers LoRA example's recipe."""
    import torch
    from diffusers import DDPMScheduler

    from plain_loop import add_example_lora, example_optimizer, plain_step

    weight_dtype = torch.bfloat16
    unet, vae, encoders = build_modules(spec, device)
    for module in (unet, vae, *encoders):
        module.to(device, dtype=weight_dtype)
    params = add_example_lora(unet, rank, rank)  # the adapter in float32
    if checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    optimizer, lr_scheduler = example_optimizer(params, LEARNING_RATE)
    noise_scheduler = DDPMScheduler(**SCHEDULER)
    # the example encodes in weight_dtype: latents and text embeddings come out in bfloat16
    latents, embeds, pooled, ids = make_batch(spec, device, weight_dtype)
    added = None if pooled is None else {"text_embeds": pooled, "time_ids": ids}
    return (lambda: plain_step(unet, noise_scheduler, latents, embeds, added, params, optimizer, lr_scheduler,
                               autocast=weight_dtype)), unet, params, []


def case_child(family: str, method: str, smoke: str, warmup: str, steps: str, rank: str, checkpointing: str,
               out: str) -> None:
    import resource

    import torch

    from plain_loop import lora_layers, threads_like_the_product

    smoke, checkpointing = smoke == "1", checkpointing == "1"
    device = torch.device("cpu" if smoke else "cuda")
    if smoke:
        torch.set_num_threads(threads_like_the_product())  # as the trainer's apply_trainer_threads
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke on a machine without one")
    spec = (SMOKE if smoke else FULL)[family]
    cuda = device.type == "cuda"
    t_build = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        if method == "builtin":
            step, unet, params, notes = builtin_case(spec, family, device, int(rank), checkpointing, Path(workdir))
        else:
            step, unet, params, notes = plain_case(spec, family, device, int(rank), checkpointing)
    build_s = time.perf_counter() - t_build
    layers = lora_layers(unet)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in unet.parameters() if not p.requires_grad})
    if cuda:
        torch.cuda.synchronize()
        static = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    losses = [step() for _ in range(int(warmup))]
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    losses += [step() for _ in range(int(steps))]
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    result = {
        "family": family, "method": method, "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "resolution": spec["resolution"], "batch": spec["batch"],
        "gradient_checkpointing": checkpointing, "rank": int(rank), "build_s": build_s,
        "warmup_steps": int(warmup), "steps": int(steps), "seconds": seconds, "steps_per_s": int(steps) / seconds,
        "lora_layers": layers, "trained_params": sum(p.numel() for p in params),
        "trained_dtypes": sorted({str(p.dtype).removeprefix("torch.") for p in params}),
        "frozen_unet_dtypes": dtypes, "notes": notes, "first_loss": losses[0], "last_loss": losses[-1],
        "static_mib": static / 2**20 if cuda else None,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
        # on the CPU (smoke) only the process's peak RSS, for a sign of life
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(out).write_text(json.dumps(result))


# -- the benchmark -----------------------------------------------------------------------------------

def run_case(tmp: Path, family: str, method: str, args, checkpointing: bool, timeout: float) -> dict:
    out = tmp / f"{family}-{method}-{int(checkpointing)}.json"
    command = [sys.executable, __file__, "--case", family, method, "1" if args.smoke else "0", str(args.warmup),
               str(args.steps), str(args.rank), "1" if checkpointing else "0", str(out)]
    started = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"family": family, "method": method, "gradient_checkpointing": checkpointing,
                "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        return {"family": family, "method": method, "gradient_checkpointing": checkpointing,
                "error": f"exit {proc.returncode}: {tail}"}
    return {**json.loads(out.read_text()), "process_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny configs, few steps: proves the script runs")
    parser.add_argument("--families", default="sd15,sdxl")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; smoke 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20; smoke 3)")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = rank)")
    parser.add_argument("--checkpointing", choices=("off", "on", "both"), default="off",
                        help="gradient checkpointing of the UNet, in both methods alike")
    parser.add_argument("--budget", type=float, default=420, help="seconds; cases not started by then are skipped")
    args = parser.parse_args()
    args.warmup = args.warmup if args.warmup is not None else (1 if args.smoke else 3)
    args.steps = args.steps if args.steps is not None else (3 if args.smoke else 20)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    for family in families:
        if family not in FULL:
            parser.error(f"unknown family {family}: sd15, sdxl")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing]
    started = time.monotonic()
    cases, missing = [], None
    with tempfile.TemporaryDirectory(prefix="otweb-gpu-bench-") as tmp:
        for checkpointing in modes:
            for family in families:
                for method in ("builtin", "plain"):
                    left = args.budget - (time.monotonic() - started)
                    if missing:
                        cases.append({"family": family, "method": method, "gradient_checkpointing": checkpointing,
                                      "error": f"skipped: {missing}"})
                        continue
                    if left < 20:
                        cases.append({"family": family, "method": method, "gradient_checkpointing": checkpointing,
                                      "error": "skipped: --budget spent"})
                        continue
                    case = run_case(Path(tmp), family, method, args, checkpointing, timeout=min(300, left))
                    cases.append(case)
                    if "ModuleNotFoundError" in case.get("error", ""):
                        # the same in every case: stop here (the GPU machine's image lacks diffusers
                        # and flask, which webapp/__init__ imports: carry them as wheels)
                        missing = case["error"].splitlines()[-1]
                    print(f"{family} {method} checkpointing={'on' if checkpointing else 'off'}: "
                          + (case["error"] if "error" in case else
                             f"{case['steps_per_s']:.2f} steps/s, peak "
                             + (f"{case['peak_mib']:.0f} MiB" if case["peak_mib"] is not None else
                                f"RSS {case['peak_rss_mib']:.0f} MiB (CPU)")
                             + f", {case['lora_layers']} LoRA layers, built in {case['build_s']:.1f} s"), flush=True)
    rows, comparisons = [], []
    for checkpointing in modes:
        for family in families:
            a, b = ([c for c in cases if c["family"] == family and c["method"] == m
                     and c["gradient_checkpointing"] == checkpointing] for m in ("builtin", "plain"))
            a, b = a[0], b[0]
            if "error" not in a and "error" not in b:
                comparisons.append({
                    "family": family, "gradient_checkpointing": checkpointing,
                    "speed_ratio": a["steps_per_s"] / b["steps_per_s"],
                    "peak_ratio": a["peak_mib"] / b["peak_mib"] if a["peak_mib"] else None,
                    "same_lora": a["lora_layers"] == b["lora_layers"] and a["trained_params"] == b["trained_params"]})
            for label, c in (("built-in (Stepper)", a), ("plain diffusers loop", b)):
                if "error" in c:
                    rows.append([family, label, "ckpt" if checkpointing else "-", "-", "-", "-", "-", "-",
                                 c["error"].splitlines()[-1][:80]])
                    continue
                mem = (f"{c['peak_mib']:.0f}" if c["peak_mib"] is not None else f"(RSS {c['peak_rss_mib']:.0f})")
                rows.append([family, label, "ckpt" if checkpointing else "-", f"{c['resolution']} px x {c['batch']}",
                             f"{c['steps_per_s']:.3f}", mem,
                             "-" if c["static_mib"] is None else f"{c['static_mib']:.0f}",
                             f"{c['lora_layers']} / {c['trained_params']:,}", f"{c['last_loss']:.4f}"])
    device = next((c["device"] for c in cases if "device" in c), "?")
    print(f"\n{'SMOKE (CPU, tiny configs) ' if args.smoke else ''}{device}, BFLOAT_16, LoRA rank {args.rank} "
          f"attn-only, {args.warmup} warm-up + {args.steps} timed steps")
    print(_table(["family", "step", "grad. ckpt", "batch", "steps/s", "peak MiB", "weights MiB",
                  "LoRA layers / params", "last loss"], rows))
    for c in comparisons:
        peak = "-" if c["peak_ratio"] is None else f"{c['peak_ratio']:.3f}"
        print(f"{c['family']}{' (ckpt)' if c['gradient_checkpointing'] else ''}: built-in / plain steps/s "
              f"{c['speed_ratio']:.3f}, peak memory {peak}"
              + ("" if c["same_lora"] else "  ** LoRA layers or parameters differ **"))
    result = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "smoke": args.smoke, "device": device,
              "wall_s": time.monotonic() - started, "rank": args.rank, "warmup": args.warmup, "steps": args.steps,
              "cases": cases, "comparisons": comparisons,
              "speed_ratio_median": statistics.median(c["speed_ratio"] for c in comparisons) if comparisons else None}
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    path = results / (f"{NAME}_smoke.json" if args.smoke else f"{NAME}.json")
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wall {result['wall_s']:.0f} s; results: {path}")


def _table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--case":
        sys.path.insert(0, str(ROOT))
        case_child(*sys.argv[2:10])
    else:
        main()
