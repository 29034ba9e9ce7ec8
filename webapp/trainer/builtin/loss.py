"""The diffusion loss: noise (with offset noise), the target the model predicts, and the
per-sample weights (concept loss weight, min-SNR).

The target follows the base model's scheduler: ``epsilon`` (SD 1.x, SDXL, 2.x _BASE) or
``v_prediction`` (SD 2.x 768 px). Min-SNR-gamma (Hang et al. 2023) weights each timestep by
min(SNR, gamma) / SNR for epsilon and min(SNR, gamma) / (SNR + 1) for v-prediction, so that the
many easy low-noise steps do not dominate.
"""
from __future__ import annotations

import torch


def make_noise(latents: torch.Tensor, generator: torch.Generator, offset_weight: float,
               rows: tuple[int, int] | None = None) -> torch.Tensor:
    """Gaussian noise like ``latents``; offset noise adds a per-channel constant, which lets the
    model learn to change an image's overall brightness. ``rows`` = (first, total): drawn for a
    global batch of total rows, these latents' rows kept (data parallelism)."""
    first, total = rows or (0, latents.shape[0])
    keep = slice(first, first + latents.shape[0])
    noise = torch.randn((total, *latents.shape[1:]), generator=generator, device=latents.device)[keep]
    if offset_weight:
        offset = torch.randn((total, latents.shape[1], 1, 1), generator=generator,
                             device=latents.device)[keep]
        noise = noise + offset_weight * offset
    return noise


def prediction_type(scheduler) -> str:
    kind = scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"the base model's scheduler predicts {kind!r}; the built-in trainer "
                         "trains epsilon and v_prediction models")
    return kind


def target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    if prediction_type(scheduler) == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return noise


def snr(scheduler, timesteps: torch.Tensor) -> torch.Tensor:
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas / (1.0 - alphas)


def timestep_weights(scheduler, timesteps: torch.Tensor, loss_weight_fn: str, gamma: float) -> torch.Tensor:
    if loss_weight_fn != "MIN_SNR_GAMMA":
        return torch.ones(len(timesteps), device=timesteps.device)
    ratio = snr(scheduler, timesteps)
    clipped = torch.clamp(ratio, max=gamma)
    if prediction_type(scheduler) == "v_prediction":
        return clipped / (ratio + 1.0)
    return clipped / ratio


def per_sample_mse(prediction: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    return (prediction.float() - wanted.float()).pow(2).flatten(1).mean(1)
