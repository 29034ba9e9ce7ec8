"""An exponential moving average of the trained weights (OneTrainer's ``ema``).

Every ``interval`` optimizer steps: shadow = decay * shadow + (1 - decay) * weight. The shadow
lives on the training device (ema GPU) or in CPU memory (ema CPU, for big fine-tunes). Outputs
are written from the shadow; sampling uses the live weights (OneTrainer's non_ema_sampling).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


class EMA:
    def __init__(self, params: list[torch.nn.Parameter], decay: float, interval: int, on_cpu: bool):
        self.params, self.decay, self.interval = list(params), decay, max(1, interval)
        device = torch.device("cpu") if on_cpu else None
        self.shadow = [p.detach().to(device or p.device, torch.float32, copy=True) for p in self.params]
        self.updates = 0

    @torch.no_grad()
    def step(self, optimizer_step: int) -> None:
        """Call after optimizer step number ``optimizer_step`` (1-based)."""
        if optimizer_step % self.interval:
            return
        for shadow, param in zip(self.shadow, self.params):
            shadow.lerp_(param.detach().to(shadow.device, torch.float32), 1.0 - self.decay)
        self.updates += 1

    @contextmanager
    @torch.no_grad()
    def applied(self):
        """The shadow weights in the model for the duration (to save them), then the live ones."""
        live = [p.detach().clone() for p in self.params]
        for shadow, param in zip(self.shadow, self.params):
            param.copy_(shadow.to(param.device, param.dtype))
        try:
            yield
        finally:
            for saved, param in zip(live, self.params):
                param.copy_(saved)

    def state_dict(self) -> dict:
        return {"shadow": [s.cpu() for s in self.shadow], "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("the backup's EMA does not match the trained weights")
        for shadow, saved in zip(self.shadow, state["shadow"]):
            shadow.copy_(saved.to(shadow.device))
        self.updates = int(state.get("updates", 0))
