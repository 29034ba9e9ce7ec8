"""One training step: noise, the forward pass, the weighted loss, backward, and every
``gradient_accumulation_steps`` batches the optimizer step (loss scaling for float16,
``clip_grad_norm``, the LR schedule, EMA).

A batch is one step of the run's progress; the optimizer steps after every ``accumulation``
batches (and after the last batch), so the LR schedule counts optimizer steps.
"""
from __future__ import annotations

import contextlib

import torch

from webapp.trainer.builtin import loss as losses
from webapp.trainer.builtin.conditioning import TextConditions, encode_captions, unet_kwargs


class Stepper:
    def __init__(self, parts, settings, groups, optimizer, lr_scheduler, device, amp_dtype,
                 noise_rng: torch.Generator, ema=None, reducer=None):
        self.parts, self.settings, self.groups = parts, settings, groups
        self.optimizer, self.lr_scheduler, self.device = optimizer, lr_scheduler, device
        self.amp_dtype, self.noise_rng, self.ema = amp_dtype, noise_rng, ema
        self.reducer = reducer  # averages gradients over the ranks (None: one rank)
        self.options = settings.options
        self.accumulation = self.options.gradient_accumulation_steps
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 and device.type == "cuda" else None
        self.params = [p for group in groups for p in group.params.values()]
        self.pending = 0          # batches whose gradients wait for the optimizer
        self.optimizer_steps = 0  # restored from the LR scheduler on resume

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def text_conditions(self, text) -> TextConditions:
        if isinstance(text, TextConditions):
            return text
        return encode_captions(self.parts, text, self.device)

    def loss(self, latents, text, ids, weights, rows: tuple[int, int] | None = None) -> torch.Tensor:
        """The batch's loss (a graph to backward through). ``rows`` = (first, total): this batch
        is rows first.. of a global batch of total rows; the noise and timesteps are drawn for
        all of them (the same draws on every rank) and this batch's rows kept."""
        scheduler, options = self.parts.scheduler, self.options
        first, total = rows or (0, len(latents))
        noise = losses.make_noise(latents, self.noise_rng, options.offset_noise_weight, (first, total))
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (total,),
                                  generator=self.noise_rng, device=self.device)[first:first + len(latents)]
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with self.autocast():
            conditions = self.text_conditions(text)
            kwargs = unet_kwargs(self.parts, conditions, ids)
            prediction = self.parts.unet(noisy, timesteps, **kwargs).sample
        wanted = losses.target(scheduler, latents, noise, timesteps)
        per_sample = losses.per_sample_mse(prediction, wanted)
        per_sample = per_sample * losses.timestep_weights(scheduler, timesteps, options.loss_weight_fn,
                                                          options.loss_weight_strength)
        return (per_sample * weights).mean()

    def step(self, batch, last_batch: bool, rows: tuple[int, int] | None = None,
             share: float = 1.0) -> float:
        """Train one batch; the optimizer steps when the accumulation is full or the run ends.
        Returns the batch's loss (the one sync per step). ``share`` weighs a rank's slice."""
        loss = self.loss(*batch, rows=rows) * share
        scaled = loss / self.accumulation
        if self.scaler is not None:
            self.scaler.scale(scaled).backward()
        else:
            scaled.backward()
        self.pending += 1
        if self.pending >= self.accumulation or last_batch:
            self._optimizer_step()
        return loss.item()

    def reduce_pending(self) -> None:
        if self.reducer is not None:
            self.reducer.reduce()

    def _optimizer_step(self) -> None:
        self.reduce_pending()
        clip = self.options.clip_grad_norm
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(self.params, clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        self.pending = 0
        self.optimizer_steps = self.lr_scheduler.last_epoch
        if self.ema is not None:
            self.ema.step(self.optimizer_steps)

    def learning_rate(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def discard_pending(self) -> None:
        """Forget gradients of an unfinished accumulation (after an error)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.pending = 0
