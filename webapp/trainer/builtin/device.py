"""The device and precision: where training runs and in which dtypes (its CPU threads: trainer/threads.py)."""
from __future__ import annotations

import torch

DTYPES = {"FLOAT_32": torch.float32, "FLOAT_16": torch.float16, "BFLOAT_16": torch.bfloat16}


def pick_device(requested: str) -> tuple[torch.device, str]:
    """The config's ``train_device`` ("" = cuda when available); falls back to the CPU with a
    note when CUDA is asked for but absent."""
    requested = (requested or "").strip()
    if not requested:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), ""
    if requested.startswith("cuda") and not torch.cuda.is_available():
        return torch.device("cpu"), f"train_device {requested!r} is not available here; training on the CPU"
    return torch.device(requested), ""


def autocast_dtype(device: torch.device, train_dtype: str) -> torch.dtype | None:
    """Mixed precision as the config asks: FLOAT_16 (with loss scaling) or BFLOAT_16 on CUDA;
    on the CPU BFLOAT_16 only (its float16 kernels are few and slow: float32 instead)."""
    if device.type == "cuda":
        return {"FLOAT_16": torch.float16, "BFLOAT_16": torch.bfloat16}.get(train_dtype)
    return torch.bfloat16 if train_dtype == "BFLOAT_16" else None


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def cast_frozen_parts(parts, settings, trained: set[str], amp: torch.dtype | None) -> list[str]:
    """Frozen parts to their ``weight_dtype`` (saves memory); only under autocast, which casts
    the activations to match; a part that trains (or carries a LoRA, whose adapter stays float32)
    keeps float32 master weights only for what trains. Returns notes for the log."""
    notes = []
    modules = {"unet": parts.unet, "text_encoder": parts.text_encoders[0],
               "vae": parts.vae}
    if len(parts.text_encoders) > 1:
        modules["text_encoder_2"] = parts.text_encoders[1]
    for name, module in modules.items():
        wanted = settings.options.part(name).weight_dtype if name != "vae" else settings.options.vae_weight_dtype
        if wanted == "FLOAT_32":
            continue
        if amp is None:
            notes.append(f"{name}: weight_dtype {wanted} needs mixed precision (train_dtype); "
                         "kept in float32")
            continue
        if name in trained and settings.training_method == "FINE_TUNE":
            notes.append(f"{name}: trains in float32 (weight_dtype {wanted} applies to frozen parts)")
            continue
        if name == "vae" and wanted == "FLOAT_16":
            notes.append("vae: kept in float32 (SD VAEs overflow in float16)")
            continue
        _cast_frozen_weights(module, DTYPES[wanted])
    return notes


def _cast_frozen_weights(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every frozen parameter and buffer to ``dtype``; trainable ones (LoRA adapters, the
    embedding's vectors) stay float32."""
    for param in module.parameters():
        if not param.requires_grad and param.is_floating_point():
            param.data = param.data.to(dtype)
    for buffer_owner in module.modules():
        for key, buffer in list(buffer_owner._buffers.items()):
            if buffer is not None and buffer.is_floating_point():
                buffer_owner._buffers[key] = buffer.to(dtype)
