"""Stable Diffusion 1.x, 2.x and XL pipelines as one original-layout checkpoint, and back.

``save_pipeline`` writes every part (UNet, VAE, text encoders) under the original single-file
names (single_file_keys.py) into a .safetensors file, or a torch .ckpt ({"state_dict": ...})
when the destination ends in .ckpt; atomically, through a temp file in the same folder. The
file's metadata also carries the diffusers configs of every part and the tokenizer files: a
single file names no architecture, and diffusers would otherwise fetch the configs from the
Hugging Face hub, which an offline machine cannot reach.

``load_pipeline`` reads such a file back offline from those configs, and any other checkpoint
(ComfyUI/A1111 downloads) with diffusers' ``from_single_file``, which needs the hub once.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import zlib
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from webapp.trainer.builtin import single_file_keys as keys

CONFIGS_KEY = "otweb.diffusers_configs"  # JSON {relative path: text} of the pipeline's configs
TOKENIZERS_KEY = "otweb.tokenizers"  # the same for the tokenizer files, zlib'd and base64'd
CKPT_METADATA = "otweb_metadata"  # where a .ckpt keeps the same metadata dict
CLIP_XL = "conditioner.embedders.0.transformer."
OPEN_CLIP_XL = "conditioner.embedders.1.model."


def original_state_dict(parts) -> dict[str, torch.Tensor]:
    """Every weight of the pipeline under its original single-file name (mostly the modules' own
    tensors: only OpenCLIP's fused and transposed ones are new)."""
    state = keys.with_prefix(keys.UNET_PREFIX, keys.unet_to_original(parts.unet.state_dict(),
                                                                     parts.unet.config))
    state.update(keys.with_prefix(keys.VAE_PREFIX, keys.vae_to_original(parts.vae.state_dict(),
                                                                        parts.vae.config)))
    encoders = [keys.clip_state(encoder) for encoder in parts.text_encoders]
    if parts.family.is_xl:
        state.update(keys.with_prefix(CLIP_XL, keys.clip_to_original(encoders[0])))
        state.update(keys.with_prefix(OPEN_CLIP_XL, keys.open_clip_to_original(encoders[1])))
    elif parts.family.name == "sd2":
        state.update(keys.with_prefix("cond_stage_model.model.", keys.open_clip_to_original(encoders[0])))
    else:
        state.update(keys.with_prefix("cond_stage_model.transformer.", keys.clip_to_original(encoders[0])))
    return state


def cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """CPU copies in ``dtype`` (floating tensors only; integer buffers keep theirs)."""
    return {key: value.detach().to("cpu", dtype if value.is_floating_point() else value.dtype)
            .contiguous() for key, value in state.items()}


def pipeline_files(parts) -> tuple[dict[str, str], dict[str, str]]:
    """The diffusers configs (model_index.json, <part>/config.json, the scheduler's) and the
    tokenizer files, as {relative path: text}: what ``from_single_file(config=...)`` reads."""
    pipeline = parts.pipeline()
    configs, tokenizers = {}, {}
    with tempfile.TemporaryDirectory(prefix="otweb-configs-") as temp:
        folder = Path(temp)
        pipeline.save_config(folder)
        for name, module in pipeline.components.items():
            if module is None:
                continue
            if name.startswith("tokenizer"):
                module.save_pretrained(folder / name)
            elif hasattr(module, "save_config"):  # diffusers models and schedulers
                module.save_config(folder / name)
            else:  # transformers models: their config only
                module.config.save_pretrained(folder / name)
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                relative = file.relative_to(folder).as_posix()
                target = tokenizers if relative.startswith("tokenizer") else configs
                target[relative] = file.read_text(encoding="utf-8")
    return configs, tokenizers


def config_metadata(parts) -> dict[str, str]:
    configs, tokenizers = pipeline_files(parts)
    packed = base64.b64encode(zlib.compress(json.dumps(tokenizers).encode("utf-8"), 9)).decode("ascii")
    return {CONFIGS_KEY: json.dumps(configs, sort_keys=True), TOKENIZERS_KEY: packed}


def unpack_configs(metadata: dict[str, str], folder: Path) -> None:
    files = json.loads(metadata[CONFIGS_KEY])
    if TOKENIZERS_KEY in metadata:
        files.update(json.loads(zlib.decompress(base64.b64decode(metadata[TOKENIZERS_KEY]))))
    for relative, text in files.items():
        target = (folder / relative).resolve()
        if folder.resolve() not in target.parents:
            raise ValueError(f"unsafe file name in the checkpoint's configs: {relative}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def save_pipeline(parts, destination: Path, dtype: torch.dtype, metadata: dict[str, str]) -> Path:
    """One checkpoint of the whole pipeline in the original layout: a .safetensors file, or a
    torch .ckpt when ``destination`` ends in .ckpt. Written to a temp file in the same folder and
    renamed into place, so a failure leaves no partial file."""
    destination = Path(destination)
    state = cast(original_state_dict(parts), dtype)
    metadata = {**{str(k): str(v) for k, v in metadata.items()}, **config_metadata(parts)}
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if destination.suffix.lower() == ".ckpt":
            step = metadata.get("otweb.global_step", "0")
            torch.save({"state_dict": state, CKPT_METADATA: metadata,
                        "global_step": int(step) if step.isdigit() else 0}, temp)
        else:
            save_file(state, temp, metadata=metadata)
        os.replace(temp, destination)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return destination


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata ``save_pipeline`` wrote ({} for other checkpoints)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an old or foreign format: diffusers reads it (or says why not)
        return {}
    found = loaded.get(CKPT_METADATA) if isinstance(loaded, dict) else None
    return dict(found) if isinstance(found, dict) else {}


def _read_tensors(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefix)}
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {key: value for key, value in state.items() if key.startswith(prefix)}


def _open_clip_xl(path: Path, config_folder: Path):
    """SDXL's second text encoder, read here rather than by ``from_single_file``: diffusers picks
    the encoder a checkpoint holds by comparing widths, so with encoders of one width (the tiny
    test models) it would read the first encoder's weights into the second."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    model = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(config_folder))
    state = convert_open_clip_checkpoint(model, _read_tensors(path, OPEN_CLIP_XL), prefix=OPEN_CLIP_XL)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [key for key in missing if not key.endswith("position_ids")] or unexpected:
        raise ValueError(f"{path}: SDXL's second text encoder does not fit its config "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.float().eval()


def load_pipeline(path: Path, family):
    """The pipeline of a single-file checkpoint, float32 on the CPU. Offline for files that
    ``save_pipeline`` wrote; other checkpoints need diffusers' configs from the hub."""
    path = Path(path)
    extra = {} if family.is_xl else {"safety_checker": None, "requires_safety_checker": False}
    metadata = read_metadata(path)
    if CONFIGS_KEY in metadata:
        with tempfile.TemporaryDirectory(prefix="otweb-single-file-") as temp:
            unpack_configs(metadata, Path(temp))
            if family.is_xl:
                extra["text_encoder_2"] = _open_clip_xl(path, Path(temp) / "text_encoder_2")
            return family.pipeline_class.from_single_file(
                str(path), config=temp, dtype=torch.float32, local_files_only=True, **extra)
    try:
        return family.pipeline_class.from_single_file(str(path), dtype=torch.float32, **extra)
    except OSError as exc:  # huggingface_hub's "not found / cannot connect" errors are OSErrors
        raise ValueError(
            f"cannot read the single-file checkpoint {path}: diffusers needs the "
            f"{family.pipeline_class.__name__} configs from the Hugging Face hub for it and could "
            f"not get them ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Pass a diffusers folder of the model instead (or run once with the hub reachable)."
        ) from exc
