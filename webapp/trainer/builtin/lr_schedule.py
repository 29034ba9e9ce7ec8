"""The learning-rate schedule as a pure function of the step (nanoGPT's ``get_lr`` shape).

A linear warm-up over ``warmup`` steps, then CONSTANT, LINEAR (down to 0 at the last step) or
COSINE (half a cosine down to 0). Wrapped in a LambdaLR so its state travels in backups.
"""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, scheduler: str, warmup: int, max_step: int) -> float:
    """The multiplier of the base learning rate for the step that follows ``step`` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    span = max(1, max_step - warmup)
    done = min(1.0, (step - warmup) / span)
    if scheduler == "LINEAR":
        return 1.0 - done
    if scheduler == "COSINE":
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return 1.0


def make_lr_scheduler(optimizer, scheduler: str, warmup: int, max_step: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, scheduler, warmup, max_step))
