"""The trained model written in the config's ``output_model_format`` and ``output_dtype``.

LoRAs: diffusers/peft keys (SAFETENSORS, DIFFUSERS_LORA) or kohya's (KOHYA_LORA, COMFY_LORA);
fine-tunes: a diffusers folder (DIFFUSERS) or one original-layout checkpoint (SAFETENSORS,
ORIGINAL_SINGLE_FILE, CKPT; single_file.py); embeddings: A1111/ComfyUI's safetensors layout.
See webapp/trainer/output_formats.py for what each format is. Every writer casts to ``dtype``,
makes the parent folder, writes into a temp file or folder beside the destination and renames it
into place (a failure leaves no partial output), stores ``metadata`` and returns the path.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import torch
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from webapp.config.builtin.options import MODEL_FAMILIES
from webapp.config.builtin.output_formats import KOHYA_FORMATS, SUPPORTED_OUTPUT_FORMATS
from webapp.trainer.builtin import single_file

ADAPTER = "default"
METADATA_FILE = "training_metadata.json"  # a diffusers folder's metadata
LORA_METADATA_KEY = "lora_adapter_metadata"  # where diffusers looks for the adapter configs
BASE_VERSION = {"sd15": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}  # kohya's ss_ names
MODELSPEC_ARCHITECTURE = {"sd15": "stable-diffusion-v1", "sd2": "stable-diffusion-v2-768-v",
                          "sd2_base": "stable-diffusion-v2-512", "sdxl": "stable-diffusion-xl-v1-base"}


# -- metadata --
def output_metadata(config: dict, global_step: int, epoch: int | None = None) -> dict[str, str]:
    """What every output carries: the base model, model type, training method, steps and the
    whole config (JSON), plus kohya's ``ss_`` keys and the SAI model spec's architecture, which
    A1111 and ComfyUI show."""
    model_type = str(config.get("model_type", ""))
    method = str(config.get("training_method", ""))
    family = MODEL_FAMILIES.get(model_type, "")
    base = str(config.get("base_model_name", ""))
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    public = {key: value for key, value in config.items() if key != "secrets"}  # never tokens
    metadata = {
        "otweb.base_model": base, "otweb.model_type": model_type, "otweb.training_method": method,
        "otweb.global_step": str(int(global_step)), "otweb.created": created,
        "otweb.config": json.dumps(public, sort_keys=True, default=str),
        "ss_sd_model_name": Path(base).name or base, "ss_steps": str(int(global_step)),
        "ss_base_model_version": BASE_VERSION.get(family, ""), "ss_v2": str(family == "sd2"),
        "modelspec.sai_model_spec": "1.0.0", "modelspec.date": created,
    }
    if epoch is not None:
        metadata["ss_epoch"] = str(int(epoch))
    architecture = MODELSPEC_ARCHITECTURE.get(
        "sd2_base" if family == "sd2" and model_type.endswith("_BASE") else family)
    if architecture:
        suffix = {"LORA": "/lora", "EMBEDDING": "/textual-inversion"}.get(method, "")
        metadata["modelspec.architecture"] = architecture + suffix
    if method == "LORA":
        metadata.update(ss_network_module="networks.lora",
                        ss_network_dim=str(config.get("lora_rank", "")),
                        ss_network_alpha=str(config.get("lora_alpha", "")))
    if method == "EMBEDDING" and isinstance(config.get("embedding"), dict):
        metadata["otweb.embedding_placeholder"] = str(config["embedding"].get("placeholder", ""))
    return metadata


# -- writing, atomically --
def _cast(tensors: dict[str, torch.Tensor], dtype: torch.dtype, keep: tuple[str, ...] = ()) -> dict:
    """CPU copies in ``dtype``; keys ending in ``keep`` stay float32 (kohya's alphas are
    scalars, not weights: a float16 alpha of 0.3 would shift the LoRA's scale)."""
    out = {}
    for key, value in tensors.items():
        target = torch.float32 if key.endswith(keep) else dtype
        out[key] = value.detach().to("cpu", target if value.is_floating_point() else value.dtype).contiguous()
    return out


def write_safetensors(destination: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(tensors, temp, metadata={str(k): str(v) for k, v in metadata.items()})
        os.replace(temp, destination)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return destination


def _replace_folder(temp: Path, destination: Path) -> None:
    """Put the finished ``temp`` at ``destination``; an old output there is moved aside first
    (a folder cannot be renamed over a non-empty one) and removed after."""
    if not destination.exists():
        os.rename(temp, destination)
        return
    old = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(destination, old)
    os.rename(temp, destination)
    if old.is_dir():
        shutil.rmtree(old)
    else:
        old.unlink()


# -- LoRA --
def _lora_modules(parts) -> list[tuple[str, torch.nn.Module]]:
    """(diffusers prefix, module) of each part that carries the LoRA."""
    named = [("unet", parts.unet)] + [
        ("text_encoder" if index == 0 else f"text_encoder_{index + 1}", encoder)
        for index, encoder in enumerate(parts.text_encoders)]
    found = [(name, module) for name, module in named
             if ADAPTER in (getattr(module, "peft_config", None) or {})]
    if not found:
        raise ValueError("no part of the model carries a LoRA adapter: nothing to save")
    return found


def _module_path(prefix: str, module: torch.nn.Module, path: str) -> str:
    """Text encoders' paths with ``text_model.``: transformers 5.6+ flattened CLIPTextModel,
    but diffusers (it strips it again), ComfyUI, A1111 and kohya all name the layers with it."""
    if prefix.startswith("text_encoder") and not hasattr(module, "text_model"):
        return f"text_model.{path}"
    return path


def _jsonable(value):
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def diffusers_lora(parts) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """peft's keys under ``unet.``/``text_encoder.``/``text_encoder_2.`` and the adapter configs
    as diffusers' ``save_lora_weights`` writes them (so ``load_lora_weights`` gets rank, alpha
    and targets right)."""
    tensors, configs = {}, {}
    for prefix, module in _lora_modules(parts):
        for key, value in get_peft_model_state_dict(module, adapter_name=ADAPTER).items():
            tensors[f"{prefix}.{_module_path(prefix, module, key)}"] = value
        for key, value in module.peft_config[ADAPTER].to_dict().items():
            configs[f"{prefix}.{key}"] = value
    metadata = {"format": "pt", LORA_METADATA_KEY: json.dumps(configs, indent=2, sort_keys=True,
                                                              default=_jsonable)}
    return tensors, metadata


def _kohya_prefixes(parts) -> dict[str, str]:
    if parts.family.is_xl:
        return {"unet": "lora_unet", "text_encoder": "lora_te1", "text_encoder_2": "lora_te2"}
    return {"unet": "lora_unet", "text_encoder": "lora_te"}


# modules that kohya-style readers know by their original (SGM) names only: diffusers' kohya
# converter mangles "add_embedding_linear_1" but maps "label_emb_0_0"
KOHYA_UNET_RENAMES = {"add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def kohya_lora(parts) -> dict[str, torch.Tensor]:
    """kohya's keys: ``<lora_unet|lora_te|lora_te1|lora_te2>_<module path, dots as _>`` with
    ``.lora_down.weight`` (A), ``.lora_up.weight`` (B) and ``.alpha`` (scale x rank, so that
    alpha / rank is peft's scale whatever its alpha, rank pattern or rsLoRA)."""
    prefixes = _kohya_prefixes(parts)
    tensors = {}
    for prefix, module in _lora_modules(parts):
        config = module.peft_config[ADAPTER]
        if getattr(config, "use_dora", False) or getattr(config, "lora_bias", False):
            raise ValueError("a DoRA or LoRA-bias adapter has no kohya layout: save it as DIFFUSERS_LORA")
        for path, layer in module.named_modules():
            lora_a = getattr(layer, "lora_A", None)
            if not isinstance(lora_a, torch.nn.ModuleDict) or ADAPTER not in lora_a:
                continue
            path = KOHYA_UNET_RENAMES.get(path, path) if prefix == "unet" else path
            name = f"{prefixes[prefix]}_{_module_path(prefix, module, path).replace('.', '_')}"
            down, up = lora_a[ADAPTER].weight, layer.lora_B[ADAPTER].weight
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = up
            tensors[f"{name}.alpha"] = torch.tensor(float(layer.scaling[ADAPTER]) * down.shape[0])
    return tensors


def save_lora(parts, destination: Path, output_format: str, dtype: torch.dtype,
              metadata: dict[str, str]) -> Path:
    """The LoRA of every part that carries one, as one .safetensors file."""
    if output_format in KOHYA_FORMATS:
        tensors, extra = _cast(kohya_lora(parts), dtype, keep=(".alpha",)), {}
    elif output_format in ("SAFETENSORS", "DIFFUSERS_LORA"):
        tensors, extra = diffusers_lora(parts)
        tensors = _cast(tensors, dtype)
    else:
        raise ValueError(f"output_model_format {output_format} cannot hold a LoRA; one of "
                         f"{', '.join(SUPPORTED_OUTPUT_FORMATS['LORA'])}")
    return write_safetensors(destination, tensors, {**metadata, **extra})


# -- fine-tune --
def _cast_folder(folder: Path, dtype: torch.dtype) -> None:
    """Cast the weight files that save_pretrained wrote (the modules themselves stay as they
    are: training may go on after an intermediate save)."""
    for file in folder.rglob("*.safetensors"):
        with safe_open(str(file), framework="pt") as handle:
            file_metadata = handle.metadata()
        save_file(_cast(load_file(str(file)), dtype), str(file), metadata=file_metadata)


def save_diffusers_folder(parts, destination: Path, dtype: torch.dtype, metadata: dict[str, str]) -> Path:
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"))
    try:
        parts.pipeline().save_pretrained(temp, safe_serialization=True)
        if dtype != torch.float32:
            _cast_folder(temp, dtype)
        (temp / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        _replace_folder(temp, destination)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return destination


def save_fine_tune(parts, destination: Path, output_format: str, dtype: torch.dtype,
                   metadata: dict[str, str]) -> Path:
    """DIFFUSERS: a pipeline folder (``from_pretrained``), with metadata in training_metadata.json;
    SAFETENSORS / ORIGINAL_SINGLE_FILE: one original-layout .safetensors; CKPT: the same keys in
    a torch .ckpt. The suffix follows the format (.ckpt <-> .safetensors, none for a folder)."""
    destination = Path(destination)
    if output_format == "DIFFUSERS":
        if destination.suffix.lower() in (".safetensors", ".ckpt"):
            destination = destination.with_suffix("")
        return save_diffusers_folder(parts, destination, dtype, metadata)
    if output_format == "CKPT":
        return single_file.save_pipeline(parts, destination.with_suffix(".ckpt"), dtype, metadata)
    if output_format in ("SAFETENSORS", "ORIGINAL_SINGLE_FILE"):
        if destination.suffix.lower() in (".ckpt", ""):
            destination = destination.with_suffix(".safetensors")
        return single_file.save_pipeline(parts, destination, dtype, metadata)
    raise ValueError(f"output_model_format {output_format} cannot hold a fine-tuned model; one of "
                     f"{', '.join(SUPPORTED_OUTPUT_FORMATS['FINE_TUNE'])}")


# -- embedding --
def save_embedding(parts, vectors: list[torch.Tensor], destination: Path, dtype: torch.dtype,
                   metadata: dict[str, str]) -> Path:
    """The new tokens' vectors ([token_count, hidden size] per text encoder) in A1111's and
    ComfyUI's layout: {"emb_params": ...}; SDXL {"clip_l": first encoder's, "clip_g": second's}.
    diffusers' ``load_textual_inversion`` reads both (SDXL: once per encoder)."""
    if len(vectors) != len(parts.text_encoders):
        raise ValueError(f"{len(vectors)} embedding tensors for {len(parts.text_encoders)} text encoders")
    for tensor, encoder in zip(vectors, parts.text_encoders):
        if tensor.ndim != 2 or tensor.shape[1] != encoder.config.hidden_size:
            raise ValueError(f"embedding vectors of shape {tuple(tensor.shape)} do not fit a text "
                             f"encoder of width {encoder.config.hidden_size}")
    names = ("clip_l", "clip_g") if parts.family.is_xl else ("emb_params",)
    return write_safetensors(destination, _cast(dict(zip(names, vectors)), dtype), metadata)
