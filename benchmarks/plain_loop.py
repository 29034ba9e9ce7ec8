"""The plain diffusers LoRA loop that bench_trainer_speed.py and bench_gpu_families.py time the
built-in trainer against: the recipe of diffusers' examples/text_to_image/train_text_to_image_lora.py,
written here (our own code, same recipe).

- add_example_lora: ``unet.add_adapter(LoraConfig(r, lora_alpha, init_lora_weights="gaussian",
  target_modules=["to_k", "to_q", "to_v", "to_out.0"]))`` and the example's cast_training_params
  (the adapter in float32); returns the trained parameters.
- example_optimizer: AdamW over them (betas, weight decay and eps from an optimizer dict, else the
  example's defaults) and a constant LR scheduler.
- plain_step: one step: noise, timesteps, ``add_noise``, the UNet forward (SDXL's added conditions
  when given; under autocast when a dtype is given), MSE against the scheduler's target (epsilon:
  the noise; v_prediction: the velocity), then optimizer_step and ``loss.item()``.
- optimizer_step: backward, ``clip_grad_norm_`` (max 1.0: the example's default and the built-in's
  clip_grad_norm default), optimizer step, LR scheduler step, ``zero_grad``.

The scripts import this module in their child processes only (it imports torch; diffusers and peft
inside the set-up functions), so that torch stays out of the benchmarks' parent processes.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

# diffusers' LoRA example's targets; the preset attn-only ("attn" in the module name) picks the
# same Linear layers: attn1/attn2 .to_q/.to_k/.to_v/.to_out.0
EXAMPLE_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]


def threads_like_the_product() -> int:
    """What a trainer process sets (OTWEB_TRAINER_THREADS, else the cores but one)."""
    from webapp.settings import trainer_threads
    from webapp.trainer.threads import threads_for, usable_cpus
    return threads_for(trainer_threads(), usable_cpus())


def lora_layers(unet) -> int:
    return sum(1 for name, _ in unet.named_modules() if name.endswith(".lora_A"))


def add_example_lora(unet, rank: int, alpha: float) -> list:
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                target_modules=EXAMPLE_TARGETS))
    cast_training_params(unet, dtype=torch.float32)
    return [p for p in unet.parameters() if p.requires_grad]


def example_optimizer(params: list, lr: float, opt: dict | None = None):
    """AdamW (the config's optimizer settings where given) and a constant LR scheduler."""
    from diffusers.optimization import get_scheduler

    opt = opt or {}
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(opt.get("beta1", 0.9), opt.get("beta2", 0.999)),
                                  weight_decay=opt.get("weight_decay", 0.01), eps=opt.get("eps", 1e-8))
    return optimizer, get_scheduler("constant", optimizer=optimizer)


def optimizer_step(loss, params: list, optimizer, lr_scheduler) -> None:
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad()


def plain_step(unet, noise_scheduler, latents, embeds, added, params: list, optimizer, lr_scheduler,
               autocast=None, noise_target: bool = False) -> float:
    """One step of the example's recipe on a batch; returns the loss. ``added``: SDXL's
    {"text_embeds", "time_ids"} or None; ``autocast``: the forward's autocast dtype or None;
    ``noise_target``: MSE against the noise whatever the scheduler predicts."""
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                              device=latents.device)
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
    if noise_target or noise_scheduler.config.prediction_type == "epsilon":
        target = noise
    else:
        target = noise_scheduler.get_velocity(latents, noise, timesteps)
    with (contextlib.nullcontext() if autocast is None
          else torch.autocast(device_type=latents.device.type, dtype=autocast)):
        model_pred = unet(noisy_latents, timesteps, embeds, added_cond_kwargs=added).sample
    loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
    optimizer_step(loss, params, optimizer, lr_scheduler)
    return loss.item()
