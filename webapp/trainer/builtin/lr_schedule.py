"""The learning-rate schedule as a pure function of the step (nanoGPT's ``get_lr`` shape).

The factor multiplies each param group's own base lr (so per-part learning rates keep their
ratios). First a linear warm-up over ``warmup`` steps: ``(step + 1) / warmup``. After it,
with ``progress = (step - warmup) / (max_step - warmup)`` going from 0 towards 1:

- CONSTANT: 1
- LINEAR: ``1 - progress`` (down to 0 at the last step)
- COSINE: ``0.5 * (1 + cos(pi * progress))``, half a cosine from 1 down to 0
- COSINE_WITH_RESTARTS: ``0.5 * (1 + cos(2 * pi * cycles * progress))``: ``cycles`` whole
  cosine periods, each going smoothly from 1 down to 0 and back up to 1 (soft restarts; with
  ``cycles`` 0.5 it is COSINE)
- COSINE_WITH_HARD_RESTARTS: ``0.5 * (1 + cos(pi * ((cycles * progress) % 1)))``: ``cycles``
  half-cosines from 1 down to 0, each jumping back to 1 when the next begins; 0 once progress
  reaches 1

``cycles`` is OneTrainer's ``learning_rate_cycles``. Wrapped in a LambdaLR so its state travels
in backups.
"""
from __future__ import annotations

import math

import torch

from webapp.config.builtin.optimizer_names import SUPPORTED_LR_SCHEDULERS


def lr_factor(step: int, scheduler: str, warmup: int, max_step: int, cycles: float = 1.0) -> float:
    """The multiplier of the base learning rate for the step that follows ``step`` steps."""
    _check_scheduler(scheduler)
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, max_step - warmup)
    done = min(1.0, (step - warmup) / span)
    if scheduler == "LINEAR":
        return 1.0 - done
    if scheduler == "COSINE":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    if scheduler == "COSINE_WITH_RESTARTS":
        return 0.5 * (1.0 + math.cos(2.0 * math.pi * cycles * done))
    if scheduler == "COSINE_WITH_HARD_RESTARTS":
        if done >= 1.0:
            return 0.0
        return 0.5 * (1.0 + math.cos(math.pi * ((cycles * done) % 1.0)))
    return 1.0


def make_lr_scheduler(optimizer, scheduler: str, warmup: int, max_step: int,
                      cycles: float = 1.0, stop_after: list[int | None] | None = None):
    """One factor per param group; a group with a ``stop_after`` step (OneTrainer's
    stop_training_after) gets 0 from that step on: that part no longer changes."""
    _check_scheduler(scheduler)
    if scheduler in ("COSINE_WITH_RESTARTS", "COSINE_WITH_HARD_RESTARTS") and not cycles > 0:
        raise ValueError(f"learning_rate_cycles must be above 0, not {cycles}")
    stops = stop_after or [None] * len(optimizer.param_groups)

    def factor_for(stop: int | None):
        def factor(step: int) -> float:
            if stop is not None and step >= stop:
                return 0.0
            return lr_factor(step, scheduler, warmup, max_step, cycles)
        return factor
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [factor_for(stop) for stop in stops])


def _check_scheduler(scheduler: str) -> None:
    if scheduler not in SUPPORTED_LR_SCHEDULERS:
        raise ValueError(f"unknown learning-rate scheduler {scheduler!r}; "
                         f"one of {', '.join(SUPPORTED_LR_SCHEDULERS)}")
