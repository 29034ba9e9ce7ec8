"""The model families the built-in trainer knows, and loading a base model of one of them.

OneTrainer's model types map to three families: SD 1.x, SD 2.x (the same pipeline, OpenCLIP text
encoder, v-prediction for the 768 px models) and SDXL (two text encoders, pooled text and
size/crop ids added to the UNet's time embedding). A base model is a local diffusers folder, a
local single-file checkpoint (.safetensors/.ckpt, read by diffusers' single-file loading) or,
on a machine that is online, a hub id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)

from webapp.config.builtin.train_settings import MODEL_FAMILIES
from webapp.trainer.builtin import single_file

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")


class ModelLoadError(RuntimeError):
    """The base model cannot be read; the message names the path."""


@dataclass(frozen=True)
class Family:
    name: str  # sd15, sd2, sdxl
    pipeline_class: type
    text_encoders: int

    @property
    def is_xl(self) -> bool:
        return self.name == "sdxl"

    def folders(self) -> tuple[str, ...]:
        """The subfolders of a diffusers folder of this family."""
        names = ["unet", "vae", "scheduler", "text_encoder", "tokenizer"]
        if self.text_encoders == 2:
            names += ["text_encoder_2", "tokenizer_2"]
        return tuple(names)


FAMILIES = {
    "sd15": Family("sd15", StableDiffusionPipeline, 1),
    "sd2": Family("sd2", StableDiffusionPipeline, 1),
    "sdxl": Family("sdxl", StableDiffusionXLPipeline, 2),
}


def family_of(model_type: str) -> Family:
    return FAMILIES[MODEL_FAMILIES[model_type]]


@dataclass
class ModelParts:
    family: Family
    tokenizers: list
    text_encoders: list
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    scheduler: DDPMScheduler
    path: Path
    source: dict = field(default_factory=dict)  # how it was loaded: {"kind": folder|single_file|hub}

    @property
    def tokenizer(self):
        return self.tokenizers[0]

    @property
    def text_encoder(self):
        return self.text_encoders[0]

    def modules(self):
        return (*self.text_encoders, self.vae, self.unet)

    def pipeline(self, scheduler=None):
        """A diffusers pipeline over these very modules (no copies)."""
        scheduler = scheduler or DDIMScheduler.from_config(self.scheduler.config)
        if self.family.is_xl:
            return StableDiffusionXLPipeline(
                vae=self.vae, text_encoder=self.text_encoders[0], text_encoder_2=self.text_encoders[1],
                tokenizer=self.tokenizers[0], tokenizer_2=self.tokenizers[1], unet=self.unet,
                scheduler=scheduler, force_zeros_for_empty_prompt=True)
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoders[0], tokenizer=self.tokenizers[0],
            unet=self.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)


def looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith((".", "~"))
            and not Path(name).suffix)


def check_model_folder(path: Path, family: Family) -> None:
    missing = [part for part in ("model_index.json", *family.folders()) if not (path / part).exists()]
    if missing:
        raise ModelLoadError(f"base model {path} is not a diffusers {family.pipeline_class.__name__} "
                             f"folder: missing {', '.join(missing)}")


def read_pipeline(name: str, family: Family, original: str = "") -> tuple[object, dict]:
    """The pipeline (on the CPU, float32) from a folder, a single file or a hub id; ``original``
    is what the user wrote (for messages)."""
    path = Path(name)
    original = original or name
    fp32 = torch.float32
    try:
        if path.is_dir():
            check_model_folder(path, family)
            return (family.pipeline_class.from_pretrained(path, torch_dtype=fp32, local_files_only=True,
                                                         **_no_safety(family)),
                    {"kind": "folder"})
        if path.is_file():
            if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
                raise ModelLoadError(f"base model {path} is a file but not a checkpoint (expected "
                                     f"{', '.join(SINGLE_FILE_SUFFIXES)}) or a diffusers folder")
            return single_file.load_pipeline(path, family), {"kind": "single_file"}
        if looks_like_hub_id(original) and not Path(original).exists():
            return (family.pipeline_class.from_pretrained(original, torch_dtype=fp32,
                                                         **_no_safety(family)),
                    {"kind": "hub"})
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader's error (safetensors has its own) names the path
        raise ModelLoadError(f"cannot read the base model at {original}: {exc}") from exc
    raise ModelLoadError(f"base model not found: {path} does not exist (base_model_name is a "
                         "diffusers folder, a .safetensors/.ckpt file, or a hub id when online)")


def _no_safety(family: Family) -> dict:
    return {} if family.is_xl else {"safety_checker": None, "requires_safety_checker": False}


def load_model(name: str, model_type: str, device: torch.device, original: str = "") -> ModelParts:
    """Every part of the base model; frozen, in eval mode, on ``device`` (float32: the trainer
    casts frozen parts to their weight_dtype later)."""
    family = family_of(model_type)
    pipeline, source = read_pipeline(name, family, original)
    if family.is_xl:
        tokenizers = [pipeline.tokenizer, pipeline.tokenizer_2]
        encoders = [pipeline.text_encoder, pipeline.text_encoder_2]
    else:
        tokenizers, encoders = [pipeline.tokenizer], [pipeline.text_encoder]
    if any(part is None for part in (*tokenizers, *encoders, pipeline.vae, pipeline.unet)):
        raise ModelLoadError(f"base model {original or name} lacks a part the "
                             f"{family.pipeline_class.__name__} needs")
    parts = ModelParts(family=family, tokenizers=tokenizers, text_encoders=encoders,
                       vae=pipeline.vae, unet=pipeline.unet,
                       scheduler=DDPMScheduler.from_config(pipeline.scheduler.config),
                       path=Path(name), source=source)
    for module in parts.modules():
        module.requires_grad_(False)
        module.to(device)
        module.eval()
    return parts
