"""Built-in trainer steps/s against a plain diffusers LoRA loop, on the tiny demo model (CPU).

A: the built-in backend (BuiltinBackend, the demo config: LoRA rank 4 / alpha 4 on the UNet's
   attention layers (layer_filter_preset attn-only), AdamW, batch 4, latent caching; sampling,
   backups and saves off), in a child process of its own, stopped (TrainCommands.stop) --seconds
   after its first step.
B: a plain loop (plain_loop.py) written the way diffusers'
   examples/text_to_image/train_text_to_image_lora.py trains (our own code, same recipe), in a
   child process of its own, on the same model folder: the parts from_pretrained, frozen;
   ``unet.add_adapter(LoraConfig(r, lora_alpha, init_lora_weights="gaussian",
   target_modules=["to_k", "to_q", "to_v", "to_out.0"]))``;
   AdamW (the config's lr, betas, eps, weight_decay) over the adapter; a constant LR scheduler;
   the demo images VAE-encoded and the captions text-encoded once up front (the built-in trainer
   caches both too; the example encodes them at every step); then per step: a shuffled batch of
   the same size, noise, timesteps, ``add_noise``, the UNet forward, MSE against the scheduler's
   target, backward, ``clip_grad_norm_`` (max 1.0: the example's default and the built-in's
   clip_grad_norm default), optimizer step, LR scheduler step, ``zero_grad``, ``loss.item()``
   (the example logs the loss every step). SDXL: both encoders' penultimate hidden states,
   the pooled text and the six size/crop ids, as the example for SDXL passes them.
Both set the same torch thread count (trainer/threads.py: OTWEB_TRAINER_THREADS, else cores - 1;
B sets it itself), and both are timed the same way: steady-state steps/s = steps between the first and the last
step / the time between them (loading, caching and the final save are outside the window).
Runs alternate A B A B (--pairs); the ratio A / B per pair and its median are the figures
(goal >= 1.0). Beside it: the ratio of each run's least disturbed second (the highest steps/s over
any 1 s stretch), the same in CPU time per step (B / A; with one thread a run that waits for a
core loses wall time but little CPU time) and fastest A / fastest B. While a child trains,
the machine's busy CPU is sampled: what neither the child nor this script used is "foreign load"
(other users of a shared host), shown per run. Results go into benchmarks/results/
bench_trainer_speed.json under the family's name (each --family run keeps the others').

--profile adds one more A and B run, each with cProfile on for its timed window only, and prints
where the time goes (own time per function). --breakdown ROUNDS adds one process
(trainer_speed_breakdown.py) that starts the built-in backend and times variants of its step
interleaved (the plain recipe on the backend's own UNet and optimizer, then Stepper.loss,
Stepper.step, data.batch added in turn), so that a shared host's load hits them alike, and the
loop's per-step bookkeeping on its own.

    .venv/bin/python benchmarks/bench_trainer_speed.py [--family sd15|sd2|sdxl] [--pairs 2]
                                                       [--seconds 6] [--profile] [--breakdown 8]
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

from common import PY, RESULTS_DIR, Bench, machine, stop, table, write_results
from cpu import CpuSampler
from step_timing import make_profiler, print_profile, profile_summary, timing, usage
from trainer_speed_breakdown import breakdown_child, print_breakdown

NAME = "bench_trainer_speed"


# -- A: the built-in trainer -------------------------------------------------------------------

def builtin_child(config_path: str, workspace: str, seconds: str, out: str, profile: str) -> None:
    import torch

    from plain_loop import lora_layers
    from webapp.trainer.builtin import BuiltinBackend
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands

    commands = TrainCommands()
    profiler = make_profiler() if profile == "1" else None

    class Clock(TrainCallbacks):
        def __init__(self):
            self.times, self.cpu, self.wall, self.losses = [], [], [], []

        def progress(self, *, global_step, loss=None, **_):
            now = time.perf_counter()
            self.times.append(now)
            self.cpu.append(usage())
            self.wall.append(time.time())
            self.losses.append(loss)
            if len(self.times) == 1 and profiler is not None:
                profiler.enable()
            if now - self.times[0] >= float(seconds) and not commands.stop_requested:
                if profiler is not None:
                    profiler.disable()
                commands.stop()

    config = json.loads(Path(config_path).read_text())
    run_dir = Path(workspace) / "runs" / f"speed-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    clock = Clock()
    backend = BuiltinBackend(config, clock, commands, run_dir=run_dir, base_dir=Path(workspace))
    threads = torch.get_num_threads()  # apply_trainer_threads ran in __init__
    try:
        backend.start()
        layers = lora_layers(backend.parts.unet)
        trained = sum(p.numel() for g in backend.groups for p in g.params.values())
        backend.train()
    finally:
        backend.end()
    result = timing(clock.times, clock.cpu, clock.wall, clock.losses)
    result.update(threads=threads, lora_layers=layers, trained_params=trained)
    if profiler is not None:
        result["profile"] = profile_summary(profiler, result["steps"])
    Path(out).write_text(json.dumps(result))


# -- B: the plain diffusers loop -------------------------------------------------------------

def plain_child(config_path: str, workspace: str, seconds: str, out: str, profile: str) -> None:
    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from plain_loop import add_example_lora, example_optimizer, lora_layers, plain_step, threads_like_the_product

    torch.set_num_threads(threads_like_the_product())  # as the built-in trainer sets it
    config = json.loads(Path(config_path).read_text())
    workspace = Path(workspace)
    model = workspace / config["base_model_name"]
    xl = config["model_type"].startswith("STABLE_DIFFUSION_XL")
    seed, batch_size, lr = config["seed"], config["batch_size"], config["learning_rate"]
    torch.manual_seed(seed)

    noise_scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(model, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
    encoders, tokenizers = [text_encoder], [tokenizer]
    if xl:
        tokenizers.append(CLIPTokenizer.from_pretrained(model, subfolder="tokenizer_2"))
        encoders.append(CLIPTextModelWithProjection.from_pretrained(model, subfolder="text_encoder_2"))
    for module in (unet, vae, *encoders):
        module.requires_grad_(False)

    lora_params = add_example_lora(unet, config["lora_rank"], config["lora_alpha"])  # cast: a no-op in float32
    optimizer, lr_scheduler = example_optimizer(lora_params, lr, config.get("optimizer"))

    # the dataset, encoded once (precomputed latents and text embeddings)
    concept = config["concepts"][0]
    images = sorted((workspace / concept["path"]).glob("*.png"))
    size = int(str(config["resolution"]).split(",")[0])
    with torch.no_grad():
        pixels = torch.stack([
            torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.float32)
                             ).permute(2, 0, 1) / 127.5 - 1.0 for p in images])
        latents_all = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
        captions = [p.with_suffix(".txt").read_text().strip() for p in images]
        ids = [tok(captions, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids for tok in tokenizers]
        if xl:
            outputs = [enc(i, output_hidden_states=True) for enc, i in zip(encoders, ids)]
            embeds_all = torch.cat([o.hidden_states[-2] for o in outputs], dim=-1)
            pooled_all = outputs[-1][0]
            time_ids_all = torch.tensor([[size, size, 0, 0, size, size]] * len(images), dtype=torch.float32)
        else:
            embeds_all = text_encoder(ids[0])[0]
    unet.train()

    profiler = make_profiler() if profile == "1" else None
    times, cpu, wall, losses = [], [], [], []
    generator = torch.Generator().manual_seed(seed)
    done = False
    while not done:
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            added = {"text_embeds": pooled_all[index], "time_ids": time_ids_all[index]} if xl else None
            losses.append(plain_step(unet, noise_scheduler, latents_all[index], embeds_all[index], added,
                                     lora_params, optimizer, lr_scheduler))
            now = time.perf_counter()
            times.append(now)
            cpu.append(usage())
            wall.append(time.time())
            if len(times) == 1 and profiler is not None:
                profiler.enable()
            if now - times[0] >= float(seconds):
                done = True
                break
    if profiler is not None:
        profiler.disable()
    result = timing(times, cpu, wall, losses)
    result.update(threads=torch.get_num_threads(), lora_layers=lora_layers(unet),
                  trained_params=sum(p.numel() for p in lora_params))
    if profiler is not None:
        result["profile"] = profile_summary(profiler, result["steps"])
    Path(out).write_text(json.dumps(result))


# -- the benchmark -----------------------------------------------------------------------------

def build_demo_child(workspace: str, config_dir: str, family: str) -> None:
    from webapp.trainer.demo import build_demo
    build_demo(Path(workspace), Path(config_dir), family=family)


def run_child(bench: Bench, kind: str, config_path: Path, seconds: float, profile: bool = False) -> dict:
    out = bench.tmp / f"{kind}-{time.monotonic_ns()}.json"
    log = open(bench.tmp / f"{kind}.log", "ab")
    child = subprocess.Popen([PY, __file__, f"--{kind}-child", str(config_path), str(bench.workspace), str(seconds),
                              str(out), "1" if profile else "0"], cwd=bench.tmp, env=bench.env,
                             stdout=log, stderr=subprocess.STDOUT)
    bench.callback(stop, child)
    sampler = CpuSampler({"child": lambda: [child.pid], "self": lambda: [os.getpid()], "machine": None})
    sampler.start()
    try:
        if child.wait(timeout=150) != 0:
            raise RuntimeError(f"the {kind} child exited with {child.returncode}:\n{bench.log_tail(kind)}")
    finally:
        sampler.stop()
        log.close()
    result = json.loads(out.read_text())
    used = {name: sampler.used(name, result["t0"], result["t1"]) for name in sampler.groups}
    if None not in used.values() and result["t1"] > result["t0"]:
        foreign = used["machine"] - used["child"] - used["self"]
        result["foreign_cpu_share"] = max(0.0, foreign / ((os.cpu_count() or 1) * (result["t1"] - result["t0"])))
    else:
        result["foreign_cpu_share"] = None
    return result


def speed_config(config_dir: Path, family: str) -> dict:
    from webapp.trainer.demo import FAMILIES
    config = json.loads((config_dir / FAMILIES[family][2]).read_text())
    # epochs: more than a run reaches (each is stopped --seconds after its first step), but not
    # many more: the backend computes every epoch's batches at start
    return {**config, "epochs": 1000, "sample_after": 0, "sample_after_unit": "NEVER",
            "backup_after": 0, "backup_after_unit": "NEVER", "backup_before_save": False,
            "save_every": 0, "save_every_unit": "NEVER", "tensorboard": False,
            "clear_cache_before_training": False}  # the first run fills the cache, the rest reuse it


def share(value) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("sd15", "sd2", "sdxl"), default="sd15")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="timed window of each run")
    parser.add_argument("--profile", action="store_true", help="one more A and B run under cProfile")
    parser.add_argument("--breakdown", type=int, default=0, metavar="ROUNDS",
                        help="also time variants of the built-in step interleaved in one process (e.g. 8)")
    args = parser.parse_args()
    started = time.monotonic()
    with Bench() as bench:
        build = subprocess.run([PY, __file__, "--build-demo", str(bench.workspace), str(bench.config_dir), args.family],
                               cwd=bench.tmp, env=bench.env, capture_output=True, text=True, timeout=120)
        if build.returncode != 0:
            raise RuntimeError(f"building the demo failed:\n{build.stdout[-2000:]}{build.stderr[-2000:]}")
        config = speed_config(bench.config_dir, args.family)
        config_path = bench.tmp / "speed.json"
        config_path.write_text(json.dumps(config))
        pairs = []
        for n in range(args.pairs):
            a = run_child(bench, "builtin", config_path, args.seconds)
            b = run_child(bench, "plain", config_path, args.seconds)
            pairs.append({"builtin": a, "plain": b, "ratio": a["steps_per_s"] / b["steps_per_s"],
                          # the same in CPU time (1 thread: less disturbed by waiting for a core)
                          "cpu_ratio": b["cpu_s_per_step"] / a["cpu_s_per_step"],
                          "best_1s_ratio": a["best_1s_steps_per_s"] / b["best_1s_steps_per_s"]})
            print(f"pair {n + 1}: built-in {a['steps_per_s']:.2f} steps/s, plain {b['steps_per_s']:.2f} steps/s, "
                  f"ratio {pairs[-1]['ratio']:.3f}", flush=True)
        profile = breakdown = None
        if args.breakdown:
            out = bench.tmp / "breakdown.json"
            subprocess.run([PY, __file__, "--breakdown-child", str(config_path), str(bench.workspace),
                            str(args.breakdown), str(out), "0"], cwd=bench.tmp, env=bench.env, check=True,
                           timeout=150, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            breakdown = json.loads(out.read_text())
        if args.profile:
            profile = {"builtin": run_child(bench, "builtin", config_path, args.seconds, profile=True),
                       "plain": run_child(bench, "plain", config_path, args.seconds, profile=True)}
    ratio = statistics.median(p["ratio"] for p in pairs)
    cpu_ratio = statistics.median(p["cpu_ratio"] for p in pairs)
    best_1s_ratio = statistics.median(p["best_1s_ratio"] for p in pairs)
    best = (max(p["builtin"]["steps_per_s"] for p in pairs) / max(p["plain"]["steps_per_s"] for p in pairs))
    first = pairs[0]
    same_setup = (first["builtin"]["lora_layers"] == first["plain"]["lora_layers"]
                  and first["builtin"]["trained_params"] == first["plain"]["trained_params"]
                  and first["builtin"]["threads"] == first["plain"]["threads"])
    result = {
        "machine": machine(), "wall_s": time.monotonic() - started, "family": args.family,
        "seconds_per_run": args.seconds, "batch_size": config["batch_size"], "lora_rank": config["lora_rank"],
        "lora_alpha": config["lora_alpha"], "learning_rate": config["learning_rate"],
        "resolution": config["resolution"], "threads": first["builtin"]["threads"],
        "lora_layers": first["builtin"]["lora_layers"], "trained_params": first["builtin"]["trained_params"],
        "same_setup": same_setup, "pairs": pairs, "ratio_median": ratio, "goal": ">= 1.0",
        "cpu_ratio_median": cpu_ratio, "best_1s_ratio_median": best_1s_ratio, "ratio_best": best,
        "profile": profile, "breakdown": breakdown,
    }
    rows = []
    for n, p in enumerate(pairs):
        for label, run in (("A: built-in", p["builtin"]), ("B: plain diffusers loop", p["plain"])):
            first_row = label.startswith("A")
            rows.append([n + 1, label, run["steps"], f"{run['seconds']:.2f}", f"{run['steps_per_s']:.2f}",
                         f"{run['best_1s_steps_per_s']:.2f}", f"{run['cpu_s_per_step'] * 1000:.1f}",
                         f"{run['sys_s_per_step'] * 1000:.1f}", f"{run['minor_faults_per_step']:.0f}",
                         share(run["foreign_cpu_share"]), f"{p['ratio']:.3f}" if first_row else "",
                         f"{p['best_1s_ratio']:.3f}" if first_row else "", f"{p['cpu_ratio']:.3f}" if first_row else ""])
    print(f"\n{args.family}: tiny demo model, batch {config['batch_size']}, {config['resolution']} px, LoRA rank "
          f"{config['lora_rank']} alpha {config['lora_alpha']} on {result['lora_layers']} attention layers "
          f"({result['trained_params']} parameters), {result['threads']} torch thread(s)"
          + ("" if same_setup else "  ** A and B differ in LoRA layers, parameters or threads: "
             f"A {first['builtin']['lora_layers']}/{first['builtin']['trained_params']}/{first['builtin']['threads']}, "
             f"B {first['plain']['lora_layers']}/{first['plain']['trained_params']}/{first['plain']['threads']} **"))
    print(table(["pair", "run", "steps", "s", "steps/s", "best 1 s steps/s", "CPU ms/step", "of it system",
                 "page faults/step", "foreign load",
                 "ratio A/B", "best 1 s ratio", "CPU ratio B/A"], rows))
    each = ", ".join(f"{p['ratio']:.3f}" for p in pairs)
    print(f"\n**ratio built-in / plain = {ratio:.3f}** (median of {len(pairs)}: {each}); goal >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'}; "
          f"least disturbed second of each run {best_1s_ratio:.3f}; CPU time per step (B / A) {cpu_ratio:.3f}; "
          f"fastest A / fastest B {best:.3f}")
    if breakdown:
        print_breakdown(breakdown)
    if profile:
        print_profile("A: built-in", profile["builtin"]["profile"])
        print_profile("B: plain", profile["plain"]["profile"])
    previous = {}
    path = RESULTS_DIR / f"{NAME}.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("families", {})
        except (OSError, ValueError):
            previous = {}
    print(f"results: {write_results(NAME, {'families': {**previous, args.family: result}})}")


if __name__ == "__main__":
    children = {"--builtin-child": builtin_child, "--plain-child": plain_child, "--breakdown-child": breakdown_child}
    if len(sys.argv) > 1 and sys.argv[1] in (*children, "--build-demo"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        role = sys.argv[1]
        if role == "--build-demo":
            build_demo_child(*sys.argv[2:5])
        else:
            children[role](*sys.argv[2:7])
    else:
        main()
