"""Plain words for what the config and the record store as names: "Stable Diffusion 1.5" for
STABLE_DIFFUSION_15, "AdamW" for ADAMW, "Learning rate" for learning_rate, "3 min ago" for a Unix
time. Pages show the label; the raw name stays one hover away (a title), for those who know it."""
from __future__ import annotations

import datetime
import re
import time

from markupsafe import Markup, escape

from webapp.config.train_config import label_for

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
PATH_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
PARTS = {"unet": "UNet", "text_encoder": "Text encoder", "text_encoder_2": "Text encoder 2", "vae": "VAE",
         "optimizer": "Optimizer", "concepts": "Concept", "samples": "Sample", "image": "Image", "text": "Text",
         "embedding": "Embedding", "prior": "Prior"}


def value_label(value) -> str:
    if not isinstance(value, str):
        return "–" if value is None else str(value)
    if value in VALUE_LABELS:
        return VALUE_LABELS[value]
    if re.fullmatch(r"[A-Z0-9_]+", value) and "_" in value:  # an enum name we have no label for yet
        return value.replace("_", " ").capitalize()
    return value


def field_label(path: str) -> str:
    """``unet.learning_rate`` -> "UNet: Learning rate"; ``concepts[2].path`` -> "Concept 3: Path"."""
    steps = PATH_STEP.findall(path or "")
    if not steps:
        return path or ""
    outer = []
    for name, index in steps[:-1]:
        part = PARTS.get(name, label_for(name))
        outer.append(f"{part} {int(index) + 1}" if index else part)
    last = steps[-1][0]
    if last == "optimizer" and outer == ["Optimizer"]:
        return "Optimizer"
    return ": ".join([*outer, label_for(last)])


def plain(value) -> Markup:
    """The label, with the raw name as its title (one hover away) when they differ."""
    label = value_label(value)
    if isinstance(value, str) and label != value:
        return _raw_name(value, label)
    return Markup(escape(label))


def plain_field(path: str) -> Markup:
    return _raw_name(path, field_label(path))


def _raw_name(name, label) -> Markup:
    # f-string and escape, not Markup.format: its escaping formatter cost ~0.3 ms a call, three a list row
    return Markup(f'<span class="raw-name" title="{escape(name)}">{escape(label)}</span>')


def ago(timestamp, now: float | None = None) -> str:
    if not timestamp:
        return "–"
    seconds = (now or time.time()) - float(timestamp)
    if seconds < 0:
        return "just now"
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "min")):
        if seconds >= size:
            count = int(seconds // size)
            plural = "s" if count > 1 and unit != "min" else ""
            return f"{count} {unit}{plural} ago"
    return "just now" if seconds < 10 else f"{int(seconds)} s ago"


def when(timestamp) -> Markup:
    """A <time>: relative text, the local date and time on hover (app.js puts the browser's own
    local time there; the server's is the fallback)."""
    if not timestamp:
        return Markup("–")
    iso = datetime.datetime.fromtimestamp(float(timestamp), datetime.timezone.utc).isoformat()
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(timestamp)))
    return Markup(f'<time datetime="{escape(iso)}" title="{escape(local)}" data-relative>{escape(ago(timestamp))}</time>')


def init_app(app) -> None:
    app.add_template_filter(plain)
    app.add_template_filter(plain_field)
    app.add_template_filter(value_label)
    app.add_template_filter(field_label)
    app.add_template_filter(ago)
    app.add_template_filter(when)
