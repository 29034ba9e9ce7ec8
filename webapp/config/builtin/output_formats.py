"""Which ``output_model_format`` each training method can write, and what each one is on disk.

Torch-free: the web side validates configs with it. The first format of each method is its
default (OneTrainer's default is SAFETENSORS for every method).

LORA
    SAFETENSORS, DIFFUSERS_LORA  one .safetensors with diffusers/peft keys (``unet.``,
                                 ``text_encoder.``, ``text_encoder_2.``) and the adapter configs
                                 in its metadata: ``pipeline.load_lora_weights`` reads it.
    KOHYA_LORA, COMFY_LORA       one .safetensors with kohya's keys (``lora_unet_``, ``lora_te_``
                                 / ``lora_te1_`` / ``lora_te2_``, ``.lora_down``/``.lora_up``/
                                 ``.alpha``): what ComfyUI and A1111 load (diffusers too).
FINE_TUNE
    SAFETENSORS, ORIGINAL_SINGLE_FILE  one .safetensors in the original (CompVis/SGM) layout,
                                 as ComfyUI, A1111 and diffusers' ``from_single_file`` read it.
    DIFFUSERS                    a diffusers pipeline folder (``from_pretrained``).
    CKPT                         the single-file keys in a torch .ckpt ({"state_dict": ...}).
EMBEDDING
    SAFETENSORS                  A1111/ComfyUI layout: {"emb_params": [n, dim]}, or for SDXL
                                 {"clip_l": ..., "clip_g": ...}.
"""
from __future__ import annotations

SUPPORTED_OUTPUT_FORMATS = {
    "LORA": ("SAFETENSORS", "DIFFUSERS_LORA", "KOHYA_LORA", "COMFY_LORA"),
    "FINE_TUNE": ("SAFETENSORS", "DIFFUSERS", "ORIGINAL_SINGLE_FILE", "CKPT"),
    "EMBEDDING": ("SAFETENSORS",),
}

KOHYA_FORMATS = ("KOHYA_LORA", "COMFY_LORA")
FOLDER_FORMATS = ("DIFFUSERS",)  # written as a folder, not a file
