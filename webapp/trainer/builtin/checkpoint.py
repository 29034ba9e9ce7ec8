"""Writing the LoRA and backups, each into a temporary place first and renamed into place.

The LoRA file is in diffusers' format (``unet.``-prefixed peft keys, the adapter's config in the
safetensors metadata), so ``StableDiffusionPipeline.load_lora_weights(folder, weight_name=...)``
loads it with the right rank and alpha.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from diffusers.utils import convert_unet_state_dict_to_peft
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file

LORA_FILE = "lora.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
PROGRESS_FILE = "progress.json"
CONFIG_FILE = "config.json"


def save_lora(unet, destination: Path) -> Path:
    """Write the UNet's LoRA to ``destination`` (a .safetensors file) atomically."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    layers = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in layers.items()}
    metadata = unet.peft_config["default"].to_dict()
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{destination.name}.") as temp:
        StableDiffusionPipeline.save_lora_weights(
            temp, unet_lora_layers=layers, weight_name=destination.name,
            unet_lora_adapter_metadata=metadata, safe_serialization=True)
        os.replace(Path(temp) / destination.name, destination)
    return destination


def unique_folder(parent: Path, name: str) -> Path:
    candidate, counter = parent / name, 1
    while candidate.exists():
        counter += 1
        candidate = parent / f"{name}-{counter}"
    return candidate


def timestamp() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def load_lora(unet, path: Path) -> None:
    """Put a LoRA written by ``save_lora`` back into the UNet's adapter (exactly, float32)."""
    saved = {key[len("unet."):]: value for key, value in load_file(str(path)).items()
             if key.startswith("unet.")}
    result = set_peft_model_state_dict(unet, convert_unet_state_dict_to_peft(saved))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{path} holds weights this LoRA does not have: {unexpected[:3]}")


def write_backup(run_dir: Path, unet, training_state: dict, progress: dict, config: dict) -> Path:
    """``run_dir/backups/<timestamp>-step<N>/`` with the LoRA, the training state (optimizer,
    LR scheduler and RNG states, in optimizer.pt), the progress and the config; built in a
    hidden temp folder, then renamed: a crash mid-way leaves the previous backups whole."""
    backups = Path(run_dir) / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    final = unique_folder(backups, f"{timestamp()}-step{progress['global_step']}")
    temp = Path(tempfile.mkdtemp(dir=backups, prefix=f".{final.name}."))
    try:
        save_lora(unet, temp / LORA_FILE)
        torch.save(training_state, temp / OPTIMIZER_FILE)
        (temp / PROGRESS_FILE).write_text(json.dumps(progress, indent=2), encoding="utf-8")
        (temp / CONFIG_FILE).write_text(json.dumps(config, indent=4, default=str), encoding="utf-8")
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def complete_backups(run_dir: Path) -> list[Path]:
    """Finished backup folders (temp folders start with "."), oldest first by global step."""
    folder = Path(run_dir) / "backups"
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name.startswith(".") or not (path / PROGRESS_FILE).is_file():
            continue
        try:
            step = int(json.loads((path / PROGRESS_FILE).read_text())["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((step, path.stat().st_mtime_ns, path.name, path))
    return [entry[-1] for entry in sorted(found)]


def prune_backups(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns what went."""
    backups = complete_backups(run_dir)
    doomed = backups[:max(0, len(backups) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def resolve_output(destination: str, run_dir: Path) -> Path:
    """A relative ``output_model_destination`` lands in the run folder; an absolute one is
    used as is. A name without a suffix gets ``.safetensors``."""
    path = Path(destination or "lora.safetensors").expanduser()
    if not path.is_absolute():
        path = Path(run_dir) / path
    if not path.suffix:
        path = path.with_suffix(".safetensors")
    return path
