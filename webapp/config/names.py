"""Plain words for the enum names a config stores: "Stable Diffusion 1.5" for STABLE_DIFFUSION_15,
"AdamW" for ADAMW. Shared by the web's pages (web/labels) and the trainer's log lines, so that
both say the same thing."""
from __future__ import annotations

import re

VALUE_LABELS = {
    # model types
    "STABLE_DIFFUSION_15": "Stable Diffusion 1.5", "STABLE_DIFFUSION_15_INPAINTING": "SD 1.5 inpainting",
    "STABLE_DIFFUSION_20": "Stable Diffusion 2.0", "STABLE_DIFFUSION_20_BASE": "SD 2.0 base",
    "STABLE_DIFFUSION_20_INPAINTING": "SD 2.0 inpainting", "STABLE_DIFFUSION_20_DEPTH": "SD 2.0 depth",
    "STABLE_DIFFUSION_21": "Stable Diffusion 2.1", "STABLE_DIFFUSION_21_BASE": "SD 2.1 base",
    "STABLE_DIFFUSION_3": "Stable Diffusion 3", "STABLE_DIFFUSION_35": "Stable Diffusion 3.5",
    "STABLE_DIFFUSION_XL_10_BASE": "SDXL 1.0", "STABLE_DIFFUSION_XL_10_BASE_INPAINTING": "SDXL 1.0 inpainting",
    "WUERSTCHEN_2": "Würstchen 2", "STABLE_CASCADE_1": "Stable Cascade", "PIXART_ALPHA": "PixArt-α",
    "PIXART_SIGMA": "PixArt-Σ", "FLUX_DEV_1": "FLUX.1 dev", "FLUX_FILL_DEV_1": "FLUX.1 Fill dev",
    "SANA": "Sana", "HUNYUAN_VIDEO": "HunyuanVideo", "HI_DREAM_FULL": "HiDream full", "CHROMA_1": "Chroma",
    "QWEN": "Qwen-Image",
    # training methods
    "FINE_TUNE": "Fine-tune", "LORA": "LoRA", "EMBEDDING": "Embedding", "FINE_TUNE_VAE": "Fine-tune VAE",
    # optimizers
    "ADAMW": "AdamW", "ADAMW_8BIT": "AdamW 8-bit", "ADAM": "Adam", "ADAM_8BIT": "Adam 8-bit",
    "ADAFACTOR": "Adafactor", "CAME": "CAME", "LION": "Lion", "LION_8BIT": "Lion 8-bit", "PRODIGY": "Prodigy",
    "SGD": "SGD", "SGD_8BIT": "SGD 8-bit", "RMSPROP": "RMSprop", "SCHEDULE_FREE_ADAMW": "Schedule-free AdamW",
    "DADAPT_ADAM": "D-Adapt Adam", "ADOPT": "ADOPT", "MUON": "Muon",
    # data types
    "FLOAT_32": "float32", "FLOAT_16": "float16", "BFLOAT_16": "bfloat16", "TFLOAT_32": "tfloat32",
    "FLOAT_8": "float8", "INT_8": "int8", "NFLOAT_4": "nf4", "NONE": "none",
    # time units
    "EPOCH": "epochs", "STEP": "steps", "SECOND": "seconds", "MINUTE": "minutes", "HOUR": "hours",
    "NEVER": "never", "ALWAYS": "always",
    # learning-rate schedules
    "CONSTANT": "Constant", "LINEAR": "Linear", "COSINE": "Cosine", "COSINE_WITH_RESTARTS": "Cosine with restarts",
    "COSINE_WITH_HARD_RESTARTS": "Cosine with hard restarts", "REX": "REX", "CUSTOM": "Custom",
    # output formats
    "SAFETENSORS": "safetensors", "DIFFUSERS": "diffusers folder", "CKPT": "ckpt",
    "LEGACY_SAFETENSORS": "safetensors (legacy)", "ORIGINAL_SINGLE_FILE": "single file (original layout)",
    "KOHYA_LORA": "LoRA, kohya keys", "DIFFUSERS_LORA": "LoRA, diffusers keys", "COMFY_LORA": "LoRA, ComfyUI keys",
    "INTERNAL": "internal",
    # noise schedulers
    "DDIM": "DDIM", "EULER": "Euler", "EULER_A": "Euler ancestral", "DPMPP": "DPM++", "DPMPP_SDE": "DPM++ SDE",
    "UNIPC": "UniPC", "EULER_KARRAS": "Euler Karras", "DPMPP_KARRAS": "DPM++ Karras",
    "DPMPP_SDE_KARRAS": "DPM++ SDE Karras", "UNIPC_KARRAS": "UniPC Karras",
    # others
    "OFF": "off", "GPU": "on the GPU", "CPU": "in CPU memory", "REPEATS": "repeats", "SAMPLES": "samples",
    "UNIFORM": "uniform", "SIGMOID": "sigmoid", "LOGIT_NORMAL": "logit-normal", "HEAVY_TAIL": "heavy tail",
    "COS_MAP": "cosine map", "INVERTED_PARABOLA": "inverted parabola", "MIN_SNR_GAMMA": "Min-SNR γ",
    "STANDARD": "standard", "PNG": "PNG", "JPG": "JPEG",
}
def value_label(value) -> str:
    if not isinstance(value, str):
        return "–" if value is None else str(value)
    if value in VALUE_LABELS:
        return VALUE_LABELS[value]
    if re.fullmatch(r"[A-Z0-9_]+", value) and "_" in value:  # an enum name we have no label for yet
        return value.replace("_", " ").capitalize()
    return value
