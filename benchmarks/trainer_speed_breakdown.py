"""bench_trainer_speed.py --breakdown ROUNDS: where a built-in step's time goes, in one process.

The parent (bench_trainer_speed.py) starts breakdown_child in a child process of its own (the script
re-run with --breakdown-child) and prints its JSON with print_breakdown. The child starts the
built-in backend on the demo config (model, LoRA, latent cache) and times variants of one step
interleaved, 15 steps each per round, so that a shared host's load hits them alike: the plain recipe
(plain_loop.plain_step, MSE against the noise) on the backend's own UNet, optimizer and a fixed
batch, then Stepper.loss, Stepper.step and data.batch added in turn; then the loop's and data.batch's
per-step bookkeeping, each timed on its own (timeit, 300 calls).
"""
from __future__ import annotations

import json
import statistics
import time
import timeit
from pathlib import Path

from common import table


def breakdown_child(config_path: str, workspace: str, rounds: str, out: str, _unused: str) -> None:
    """The variants' ms per step (median and min over ``rounds`` rounds) and the bookkeeping's us
    per call, as JSON into ``out`` (see the module's docstring)."""
    from plain_loop import optimizer_step, plain_step
    from webapp.trainer.builtin import BuiltinBackend
    from webapp.trainer.builtin.tensorboard import LossBoard
    from webapp.trainer.callbacks import TrainCallbacks
    from webapp.trainer.commands import TrainCommands

    config = json.loads(Path(config_path).read_text())
    run_dir = Path(workspace) / "runs" / f"breakdown-{time.monotonic_ns()}"
    run_dir.mkdir(parents=True)
    backend = BuiltinBackend(config, TrainCallbacks(), TrainCommands(), run_dir=run_dir, base_dir=Path(workspace))
    backend.start()
    stepper, data, unet, scheduler = backend.stepper, backend.data, backend.parts.unet, backend.parts.scheduler
    params, optimizer, lr_scheduler = stepper.params, stepper.optimizer, stepper.lr_scheduler
    indices = data.epoch_batches(0)[0]
    fixed = data.batch(indices, 0)
    latents, text, ids, _ = fixed
    added = None if ids is None else {"text_embeds": text.pooled, "time_ids": ids}

    def plain_recipe():  # the target is the noise, as this variant has always had it (sd2 too)
        return plain_step(unet, scheduler, latents, text.embeds, added, params, optimizer, lr_scheduler,
                          noise_target=True)

    def stepper_loss():
        loss = stepper.loss(*fixed)
        optimizer_step(loss / stepper.accumulation, params, optimizer, lr_scheduler)
        return loss.item()

    variants = {
        "plain recipe (backend's UNet, optimizer, a fixed batch)": plain_recipe,
        "+ Stepper.loss (noise, weights, per-sample MSE)": stepper_loss,
        "+ Stepper.step (its optimizer step)": lambda: stepper.step(fixed, False),
        "+ data.batch (the built-in step as the loop runs it)": lambda: stepper.step(data.batch(indices, 0), False),
    }
    for fn in variants.values():
        for _ in range(3):
            fn()
    times = {name: [] for name in variants}
    for _ in range(int(rounds)):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(15):
                fn()
            times[name].append((time.perf_counter() - t0) / 15)
    board = LossBoard(run_dir, False, backend.callbacks.log)
    schedules = backend._schedules()
    samples = [data.samples[i] for i in indices]
    item = data.items[samples[0].item]
    parts = {
        "data.batch": lambda: data.batch(indices, 0),
        "data.batch: _latent_key per sample (memoised per variant)": lambda: [data._latent_key(i, 0) for i in indices],
        "data.batch: Path.resolve() per sample": lambda: [item.image_path.resolve() for _ in samples],
        "data.batch: captions and augments": lambda: ([data.caption(x.item, 0) for x in samples],
                                                      [data.augment(x, 0) for x in samples]),
        "loop: stop poll, commands, schedules": lambda: (backend._stop_requested(), backend._run_commands(),
                                                         backend._run_schedules(*schedules)),
        "loop: progress callback + LossBoard.step (off)": lambda: (
            backend.callbacks.progress(global_step=1, max_step=backend.max_step, epoch=0, max_epoch=1, epoch_step=1,
                                       epoch_length=6, loss=0.1, lr=stepper.learning_rate()),
            board.step(1, 0.1, 0.01, 0)),
        "loop: max_step (sum over the epochs' lengths, read twice a step)": lambda: backend.max_step,
    }
    micro = {name: timeit.timeit(fn, number=300) / 300 for name, fn in parts.items()}
    backend.end()
    Path(out).write_text(json.dumps({
        "rounds": int(rounds), "steps_per_round": 15,
        "variants_ms": {name: {"median": 1000 * statistics.median(v), "min": 1000 * min(v)} for name, v in times.items()},
        "bookkeeping_us": {name: 1e6 * v for name, v in micro.items()}}))


def print_breakdown(breakdown: dict) -> None:
    variants = breakdown["variants_ms"]
    base = next(iter(variants.values()))["median"]
    print(f"\nbreakdown, one process, {breakdown['rounds']} interleaved rounds of 15 steps each:")
    print(table(["step variant", "median ms/step", "min ms/step", "vs plain recipe"],
                [[name, f"{v['median']:.2f}", f"{v['min']:.2f}", f"{v['median'] / base:.3f}"]
                 for name, v in variants.items()]))
    print(table(["per-step bookkeeping, timed alone", "us"],
                [[name, f"{us:.1f}"] for name, us in breakdown["bookkeeping_us"].items()]))
