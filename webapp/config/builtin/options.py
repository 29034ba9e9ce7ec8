"""The parts of OneTrainer's TrainConfig that say *what* trains and *how*: per-part settings,
the LoRA, the embedding, the optimizer, precision, EMA and the loss. Read by config/builtin/train_settings.py.

Torch-free: the web validates configs with it. Field names and defaults are OneTrainer's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from webapp.config.builtin.optimizer_names import read_optimizer
from webapp.config.builtin.output_formats import SUPPORTED_OUTPUT_FORMATS

# OneTrainer's model types the built-in trainer trains, and the family each belongs to
MODEL_FAMILIES = {
    "STABLE_DIFFUSION_15": "sd15",
    "STABLE_DIFFUSION_20": "sd2", "STABLE_DIFFUSION_20_BASE": "sd2",
    "STABLE_DIFFUSION_21": "sd2", "STABLE_DIFFUSION_21_BASE": "sd2",
    "STABLE_DIFFUSION_XL_10_BASE": "sdxl",
}
DTYPES = ("FLOAT_32", "FLOAT_16", "BFLOAT_16")
EMA_MODES = ("OFF", "GPU", "CPU")
LOSS_WEIGHTS = ("CONSTANT", "MIN_SNR_GAMMA")
STEP_UNITS = ("NEVER", "EPOCH", "STEP")  # stop_training_after: time units would break exact resume
# OneTrainer's layer filter presets: module-name substrings; "full" = every Linear/Conv layer
LAYER_PRESETS = {"full": [], "attn-mlp": ["attentions"], "attn-only": ["attn"]}


@dataclass
class PartSettings:
    """One model part's object (unet, text_encoder, text_encoder_2)."""
    name: str
    train: bool = True
    learning_rate: float | None = None  # None = the global learning_rate
    weight_dtype: str = "FLOAT_32"
    stop_training_after: int = 0
    stop_training_after_unit: str = "NEVER"
    gradient_checkpointing: bool = True


@dataclass
class EmbeddingSettings:
    placeholder: str = "<embedding>"
    token_count: int = 1
    initial_embedding_text: str = "*"
    learning_rate: float | None = None  # embedding_learning_rate


@dataclass
class TrainOptions:
    parts: dict[str, PartSettings] = field(default_factory=dict)
    layer_filter: list[str] = field(default_factory=lambda: ["attn"])
    lora_dropout: float = 0.0
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    optimizer: str = "ADAMW"
    optimizer_settings: dict = field(default_factory=dict)
    learning_rate_cycles: float = 1.0
    gradient_accumulation_steps: int = 1
    clip_grad_norm: float | None = 1.0
    ema: str = "OFF"
    ema_decay: float = 0.999
    ema_update_step_interval: int = 5
    offset_noise_weight: float = 0.0
    loss_weight_fn: str = "CONSTANT"
    loss_weight_strength: float = 5.0  # MIN_SNR_GAMMA's gamma
    output_model_format: str = "SAFETENSORS"
    output_dtype: str = "FLOAT_32"
    vae_weight_dtype: str = "FLOAT_32"

    def part(self, name: str) -> PartSettings:
        return self.parts.get(name) or PartSettings(name)


def part_names(model_type: str) -> tuple[str, ...]:
    if MODEL_FAMILIES.get(model_type) == "sdxl":
        return ("unet", "text_encoder", "text_encoder_2")
    return ("unet", "text_encoder")


def read_options(reader, model_type: str, method: str) -> TrainOptions:
    """``reader`` is the settings reader (builtin/train_settings.py) over the whole config; errors go into it."""
    options = TrainOptions()
    for name in part_names(model_type):
        options.parts[name] = _read_part(reader, name)
    options.layer_filter = _layer_filter(reader)
    options.lora_dropout = reader.number("dropout_probability", 0.0, minimum=0)
    if options.lora_dropout >= 1:
        reader.fail("dropout_probability", "must be below 1")
    options.embedding = _read_embedding(reader)
    name, settings, errors = read_optimizer(reader.config.get("optimizer"))
    options.optimizer, options.optimizer_settings = name, settings
    reader.errors += errors
    options.learning_rate_cycles = reader.number("learning_rate_cycles", 1.0, minimum=0, exclusive=True)
    options.gradient_accumulation_steps = int(reader.number("gradient_accumulation_steps", 1, minimum=1,
                                                            integer=True))
    clip = reader.config.get("clip_grad_norm", 1.0)
    options.clip_grad_norm = None if clip is None else reader.number("clip_grad_norm", 1.0, minimum=0)
    if options.clip_grad_norm == 0:
        options.clip_grad_norm = None  # 0 = off, as an empty field in OneTrainer's UI
    _read_precision_and_loss(reader, options)
    _check_method(reader, options, method)
    return options


def _read_part(reader, name: str) -> PartSettings:
    raw = reader.config.get(name)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        reader.fail(name, "must be an object")
        return PartSettings(name)
    sub = type(reader)(raw, reader.base_dir)
    default_unit = "EPOCH" if name.startswith("text_encoder") else "NEVER"
    part = PartSettings(
        name=name, train=sub.flag("train", True),
        learning_rate=None if raw.get("learning_rate") is None else
        sub.number("learning_rate", 0.0, minimum=0, exclusive=True),
        weight_dtype=sub.choice("weight_dtype", "FLOAT_32", DTYPES),
        stop_training_after=int(sub.number("stop_training_after", 0, minimum=0, integer=True)
                                if raw.get("stop_training_after") is not None else 0),
        stop_training_after_unit=sub.choice("stop_training_after_unit",
                                            default_unit if raw.get("stop_training_after") else "NEVER",
                                            STEP_UNITS),
        gradient_checkpointing=sub.flag("gradient_checkpointing", True))
    reader.errors += [{**e, "field": f"{name}.{e['field']}"} for e in sub.errors]
    return part


def _layer_filter(reader) -> list[str]:
    custom = reader.text("layer_filter", "")
    if custom.strip():
        return [piece.strip() for piece in custom.split(",") if piece.strip()]
    preset = reader.config.get("layer_filter_preset", "full")
    if preset not in LAYER_PRESETS:
        reader.fail("layer_filter_preset", f"{preset!r} is not one of: {', '.join(LAYER_PRESETS)} "
                    "(or write module-name parts into layer_filter)")
        return []
    return list(LAYER_PRESETS[preset])


def _read_embedding(reader) -> EmbeddingSettings:
    raw = reader.config.get("embedding") or {}
    if not isinstance(raw, dict):
        reader.fail("embedding", "must be an object")
        return EmbeddingSettings()
    sub = type(reader)(raw, reader.base_dir)
    settings = EmbeddingSettings(
        placeholder=sub.text("placeholder", "<embedding>").strip() or "<embedding>",
        token_count=int(sub.number("token_count", 1, minimum=1, integer=True)),
        initial_embedding_text=sub.text("initial_embedding_text", "*") or "*",
        learning_rate=None if reader.config.get("embedding_learning_rate") is None else
        reader.number("embedding_learning_rate", 0.0, minimum=0, exclusive=True))
    if " " in settings.placeholder:
        sub.fail("placeholder", "must be one word (no spaces)")
    reader.errors += [{**e, "field": f"embedding.{e['field']}"} for e in sub.errors]
    return settings


def _read_precision_and_loss(reader, options: TrainOptions) -> None:
    options.ema = reader.choice("ema", "OFF", EMA_MODES)
    options.ema_decay = reader.number("ema_decay", 0.999, minimum=0)
    if options.ema_decay >= 1:
        reader.fail("ema_decay", "must be below 1")
    options.ema_update_step_interval = int(reader.number("ema_update_step_interval", 5, minimum=1,
                                                         integer=True))
    options.offset_noise_weight = reader.number("offset_noise_weight", 0.0, minimum=0)
    options.loss_weight_fn = reader.choice("loss_weight_fn", "CONSTANT", LOSS_WEIGHTS)
    options.loss_weight_strength = reader.number("loss_weight_strength", 5.0, minimum=0, exclusive=True)
    options.output_dtype = reader.choice("output_dtype", "FLOAT_32", DTYPES)
    vae = reader.config.get("vae")
    if isinstance(vae, dict) and vae.get("weight_dtype") is not None:
        if vae["weight_dtype"] in DTYPES:
            options.vae_weight_dtype = vae["weight_dtype"]
        else:
            reader.fail("vae.weight_dtype", f"{vae['weight_dtype']!r} is not supported by the built-in "
                        f"trainer; supported: {', '.join(DTYPES)}")
    reader.choice("train_dtype", "FLOAT_16", DTYPES)


def _check_method(reader, options: TrainOptions, method: str) -> None:
    formats = SUPPORTED_OUTPUT_FORMATS.get(method, ())
    if formats:
        options.output_model_format = reader.choice("output_model_format", formats[0], formats)
    if method == "FINE_TUNE" and not any(p.train for p in options.parts.values()):
        reader.fail("unet.train", "FINE_TUNE trains nothing: set train on the unet or a text encoder")
    if method == "LORA" and not any(p.train for p in options.parts.values()):
        reader.fail("unet.train", "LORA trains nothing: set train on the unet or a text encoder")
