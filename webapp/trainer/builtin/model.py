"""Load a Stable Diffusion 1.x model from a local diffusers folder and put a LoRA on its UNet."""
from __future__ import annotations

import os

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from peft import LoraConfig
from transformers import CLIPTextModel, CLIPTokenizer

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
PARTS = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")


class ModelLoadError(RuntimeError):
    """The base model cannot be read; the message names the path."""


@dataclass
class ModelParts:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    path: Path

    def modules(self):
        return (self.text_encoder, self.vae, self.unet)


def check_model_folder(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(f"base model not found: {path} does not exist")
    if not path.is_dir():
        raise ModelLoadError(f"base model {path} is a file; the built-in trainer reads a diffusers "
                             "folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, "
                             "scheduler/)")
    missing = [part for part in PARTS if not (path / part).exists()]
    if missing:
        raise ModelLoadError(f"base model {path} is not a diffusers Stable Diffusion folder: "
                             f"missing {', '.join(missing)}")


def load_model(path: str | Path, device: torch.device) -> ModelParts:
    """Every part from ``path``; the frozen parts in eval mode on ``device`` (float32)."""
    path = Path(path)
    check_model_folder(path)
    fp32 = torch.float32
    try:
        parts = ModelParts(
            tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer"),
            text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=fp32),
            vae=AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=fp32),
            unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=fp32),
            scheduler=DDPMScheduler.from_pretrained(path, subfolder="scheduler"),
            path=path)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot read the base model at {path}: {exc}") from exc
    for module in parts.modules():
        module.requires_grad_(False)
        module.to(device)
        module.eval()
    return parts


def add_lora(unet: UNet2DConditionModel, rank: int, alpha: float, seed: int) -> list[torch.nn.Parameter]:
    """A peft LoRA on the UNet's attention projections; returns its trainable parameters
    (float32). Seeded, so that the initial A matrices are the same on every run."""
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS,
                                init_lora_weights=True))
    params = [p for p in unet.parameters() if p.requires_grad]
    for param in params:
        param.data = param.data.float()
    return params


def pick_device(requested: str) -> tuple[torch.device, str]:
    """The config's ``train_device`` ("" = cuda when available); falls back to the CPU with a
    note when CUDA is asked for but absent."""
    requested = (requested or "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), ""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu"), f"train_device {requested!r} is not available here; training on the CPU"
    return torch.device(requested), ""


def share_the_cpu(device: torch.device) -> None:
    """On the CPU, leave one core to the rest of the machine (the web, the worker, Redis). torch's
    threads spin-wait for each other: with one core taken by anything else, training with every core
    slowed down ~100x in a benchmark (0.14 vs 25.8 steps/s with one thread fewer)."""
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))


def autocast_dtype(device: torch.device, train_dtype: str) -> torch.dtype | None:
    """Mixed precision on CUDA as the config asks; the CPU always trains in float32."""
    if device.type != "cuda":
        return None
    return {"FLOAT_16": torch.float16, "BFLOAT_16": torch.bfloat16}.get(train_dtype)
