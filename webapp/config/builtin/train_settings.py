"""The fields of OneTrainer's TrainConfig JSON that the built-in trainer reads, typed.

The config itself stays the user's dict (unknown keys kept, enums as names); this module only
reads it. Defaults follow OneTrainer's. The full config model and editor are a later step; this
one is what a run needs, with clear per-field errors for what the trainer cannot use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from webapp.config import paths
from webapp.config.loading import read_list_file
from webapp.config.builtin.multi_gpu import MultiGpu, read_multi_gpu
from webapp.config.builtin.options import MODEL_FAMILIES, TrainOptions, read_options
from webapp.config.builtin.optimizer_names import SUPPORTED_LR_SCHEDULERS
from webapp.settings import CONFIG_DIR_ENV, env_text

TIME_UNITS = ("EPOCH", "STEP", "SECOND", "MINUTE", "HOUR", "NEVER", "ALWAYS")
SUPPORTED_MODEL_TYPES = tuple(MODEL_FAMILIES)
SUPPORTED_METHODS = ("LORA", "FINE_TUNE", "EMBEDDING")
SUPPORTED_PROMPT_SOURCES = ("sample", "concept", "filename")
SUPPORTED_BALANCING = ("REPEATS", "SAMPLES")
SUPPORTED_TAG_DROPOUT_MODES = ("FULL", "RANDOM", "RANDOM WEIGHTED")
# OneTrainer's NoiseScheduler names the built-in sampler maps to diffusers schedulers
SAMPLE_SCHEDULERS = ("DDIM", "EULER", "EULER_A", "DPMPP", "UNIPC", "EULER_KARRAS", "DPMPP_KARRAS")


class ConfigError(ValueError):
    """A config the trainer cannot run; ``errors`` is a list of {field, message}."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


@dataclass
class SampleSpec:
    prompt: str
    negative_prompt: str = ""
    seed: int = 42
    random_seed: bool = False
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    noise_scheduler: str = "DDIM"

    @classmethod
    def from_onetrainer(cls, raw: dict) -> "SampleSpec":
        scheduler = str(raw.get("noise_scheduler") or "DDIM")
        if scheduler not in SAMPLE_SCHEDULERS:
            raise ValueError(f"noise_scheduler {scheduler!r} is not supported by the built-in "
                             f"sampler; supported: {', '.join(SAMPLE_SCHEDULERS)}")
        return cls(noise_scheduler=scheduler,prompt=str(raw.get("prompt", "")),
                   negative_prompt=str(raw.get("negative_prompt", "")),
                   seed=int(raw.get("seed", 42)), random_seed=bool(raw.get("random_seed", False)),
                   steps=int(raw.get("diffusion_steps", raw.get("steps", 20))),
                   cfg_scale=float(raw.get("cfg_scale", 7.0)),
                   width=int(raw.get("width", 512)), height=int(raw.get("height", 512)))


@dataclass
class ConceptSpec:
    """One enabled concept (OneTrainer's ConceptConfig): a folder and how its items are used."""
    path: str
    name: str = ""
    include_subdirectories: bool = False
    balancing: float = 1.0
    balancing_strategy: str = "REPEATS"
    loss_weight: float = 1.0
    seed: int = 0
    image_variations: int = 1
    text_variations: int = 1
    random_flip: bool = False
    crop_jitter: bool = True
    prompt_source: str = "sample"
    prompt_path: str = ""
    tag_shuffling: bool = False
    tag_delimiter: str = ","
    keep_tags_count: int = 1
    tag_dropout: bool = False
    tag_dropout_mode: str = "FULL"
    tag_dropout_probability: float = 0.0


@dataclass
class TrainSettings:
    base_model_name: str
    output_model_destination: str
    concept_paths: list[str]
    samples: list[SampleSpec] = field(default_factory=list)
    training_method: str = "LORA"
    model_type: str = "STABLE_DIFFUSION_15"
    learning_rate: float = 3e-6
    epochs: int = 100
    batch_size: int = 1
    resolution: int = 512
    lora_rank: int = 16
    lora_alpha: float = 1.0
    seed: int = 42
    sample_after: float = 10
    sample_after_unit: str = "MINUTE"
    sample_skip_first: int = 0
    backup_after: float = 30
    backup_after_unit: str = "MINUTE"
    backup_before_save: bool = True
    train_device: str = ""  # "" = cuda when available, else cpu
    train_dtype: str = "FLOAT_16"  # mixed precision on CUDA (FLOAT_16, BFLOAT_16); the CPU uses float32
    concepts: list[ConceptSpec] = field(default_factory=list)
    resolutions: list[int] = field(default_factory=lambda: [512])
    aspect_ratio_bucketing: bool = True
    latent_caching: bool = True
    cache_dir: str = "workspace-cache/run"
    clear_cache_before_training: bool = True
    caption_dropout: float = 0.0  # text_encoder.dropout_probability: the whole caption dropped
    learning_rate_scheduler: str = "CONSTANT"
    learning_rate_warmup_steps: int = 200
    rolling_backup: bool = False
    rolling_backup_count: int = 3
    save_every: float = 0
    save_every_unit: str = "NEVER"
    save_skip_first: int = 0
    save_filename_prefix: str = ""
    continue_last_backup: bool = False
    tensorboard: bool = False
    samples_to_tensorboard: bool = True  # OneTrainer's default; only with tensorboard on
    sample_before_training: bool = False  # our extension: the default samples at step 0 too
    options: TrainOptions = field(default_factory=TrainOptions)
    multi_gpu: MultiGpu = field(default_factory=MultiGpu)

    @property
    def family(self) -> str:
        return MODEL_FAMILIES[self.model_type]

    @property
    def texts_train(self) -> bool:
        """Whether captions' embeddings change while training (then they are not cached)."""
        if self.training_method == "EMBEDDING":
            return True
        return any(part.train for name, part in self.options.parts.items()
                   if name.startswith("text_encoder"))

    @classmethod
    def from_config(cls, config: dict, base_dir: Path | str = ".") -> "TrainSettings":
        """Read and check; relative paths resolve against ``base_dir`` (the workspace)."""
        reader = _Reader(config, Path(base_dir))
        settings = cls(
            base_model_name=reader.path("base_model_name"),
            output_model_destination=reader.text("output_model_destination", "models/lora.safetensors"),
            concept_paths=reader.concept_paths(),
            samples=reader.samples(),
            training_method=reader.choice("training_method", "FINE_TUNE", SUPPORTED_METHODS),
            model_type=reader.choice("model_type", "STABLE_DIFFUSION_15", SUPPORTED_MODEL_TYPES),
            learning_rate=reader.number("learning_rate", 3e-6, minimum=0, exclusive=True),
            epochs=int(reader.number("epochs", 100, minimum=1, integer=True)),
            batch_size=int(reader.number("batch_size", 1, minimum=1, integer=True)),
            resolution=reader.resolution(),
            lora_rank=int(reader.number("lora_rank", 16, minimum=1, integer=True)),
            lora_alpha=reader.number("lora_alpha", 1.0, minimum=0, exclusive=True),
            seed=int(reader.number("seed", 42, integer=True)),
            sample_after=reader.number("sample_after", 10, minimum=0),
            sample_after_unit=reader.choice("sample_after_unit", "MINUTE", TIME_UNITS),
            sample_skip_first=int(reader.number("sample_skip_first", 0, minimum=0, integer=True)),
            backup_after=reader.number("backup_after", 30, minimum=0),
            backup_after_unit=reader.choice("backup_after_unit", "MINUTE", TIME_UNITS),
            backup_before_save=bool(config.get("backup_before_save", True)),
            train_device=str(config.get("train_device") or ""),
            train_dtype=str(config.get("train_dtype") or "FLOAT_16"),
        )
        _read_data_path(reader, settings)
        _read_durability(reader, settings)
        settings.options = read_options(reader, settings.model_type, settings.training_method)
        settings.multi_gpu = read_multi_gpu(reader)
        if not settings.concept_paths and not reader.errors:
            reader.fail("concepts", "no enabled concept with an image folder")
        if reader.errors:
            raise ConfigError(reader.errors)
        return settings


def _read_data_path(reader: "_Reader", settings: TrainSettings) -> None:
    config = reader.config
    settings.concepts = reader.concepts()
    settings.resolutions = reader.resolutions()
    settings.aspect_ratio_bucketing = reader.flag("aspect_ratio_bucketing", True)
    settings.latent_caching = reader.flag("latent_caching", True)
    settings.cache_dir = reader.resolve(reader.text("cache_dir", "workspace-cache/run") or "workspace-cache/run")
    settings.clear_cache_before_training = reader.flag("clear_cache_before_training", True)
    text_encoder = config.get("text_encoder")
    if isinstance(text_encoder, dict):
        settings.caption_dropout = float(_Reader(text_encoder, reader.base_dir).number(
            "dropout_probability", 0.0, minimum=0))
    settings.learning_rate_scheduler = reader.choice("learning_rate_scheduler", "CONSTANT",
                                                     SUPPORTED_LR_SCHEDULERS)
    settings.learning_rate_warmup_steps = int(reader.number("learning_rate_warmup_steps", 200, minimum=0))


def _read_durability(reader: "_Reader", settings: TrainSettings) -> None:
    settings.rolling_backup = reader.flag("rolling_backup", False)
    settings.rolling_backup_count = int(reader.number("rolling_backup_count", 3, minimum=1, integer=True))
    settings.save_every = reader.number("save_every", 0, minimum=0)
    settings.save_every_unit = reader.choice("save_every_unit", "NEVER", TIME_UNITS)
    settings.save_skip_first = int(reader.number("save_skip_first", 0, minimum=0, integer=True))
    settings.save_filename_prefix = reader.text("save_filename_prefix", "")
    settings.continue_last_backup = reader.flag("continue_last_backup", False)
    settings.tensorboard = reader.flag("tensorboard", False)
    settings.samples_to_tensorboard = reader.flag("samples_to_tensorboard", True)
    settings.sample_before_training = reader.flag("sample_before_training", False)


class _Reader:
    def __init__(self, config: dict, base_dir: Path):
        if not isinstance(config, dict):
            raise ConfigError([{"field": "", "message": "a config is a JSON object"}])
        self.config, self.base_dir, self.errors = config, base_dir, []

    def fail(self, name: str, message: str) -> None:
        self.errors.append({"field": name, "message": message})

    def text(self, name: str, default: str) -> str:
        value = self.config.get(name, default)
        if not isinstance(value, str):
            self.fail(name, "must be a string")
            return default
        return value

    def path(self, name: str) -> str:
        value = self.text(name, "")
        if not value:
            self.fail(name, "is required")
            return ""
        return self.resolve(value)

    def resolve(self, value: str) -> str:
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else self.base_dir / path)

    def number(self, name: str, default, minimum=None, exclusive=False, integer=False):
        value = self.config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and value != int(value)):
            self.fail(name, "must be " + ("a whole number" if integer else "a number"))
            return default
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            self.fail(name, f"must be {'greater than' if exclusive else 'at least'} {minimum}")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.config.get(name, default)
        if not isinstance(value, bool):
            self.fail(name, "must be true or false")
            return default
        return value

    def choice(self, name: str, default: str, allowed) -> str:
        value = self.config.get(name, default)
        if value not in allowed:
            self.fail(name, f"{value!r} is not supported by the built-in trainer; supported: {', '.join(allowed)}")
            return allowed[0]
        return value

    def resolution(self) -> int:
        return self.resolutions()[0]

    def resolutions(self) -> list[int]:
        """"512" or "512,768": each a multiple of 8."""
        values = [v.strip() for v in str(self.config.get("resolution", "512")).split(",")]
        if not all(v.isdigit() and int(v) >= 8 and int(v) % 8 == 0 for v in values):
            self.fail("resolution", "the built-in trainer needs sizes that are multiples of 8, "
                      "e.g. \"512\" or \"512,768\"")
            return [512]
        return list(dict.fromkeys(int(v) for v in values))

    def _list_or_file(self, inline_key: str, file_key: str) -> list:
        items = self.config.get(inline_key)
        if items is None and self.config.get(file_key):
            # as the web reads it: only inside the read roots, opened through confined, counted
            # before anything is done with its entries; the message names no server path
            roots = paths.read_roots(self.base_dir, env_text(CONFIG_DIR_ENV) or None)
            items, problem = read_list_file(self.config[file_key], self.base_dir, roots)
            if problem:
                self.fail(file_key, problem)
                return []
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            self.fail(inline_key, "must be a list of objects")
            return []
        return items

    def concept_paths(self) -> list[str]:
        return [concept.path for concept in self.concepts()]

    def concepts(self) -> list[ConceptSpec]:
        if not hasattr(self, "_concepts"):
            self._concepts = [spec for index, raw in
                              enumerate(self._list_or_file("concepts", "concept_file_name"))
                              if (spec := self._concept(index, raw)) is not None]
        return self._concepts

    def _concept(self, index: int, raw: dict) -> ConceptSpec | None:
        if raw.get("enabled", True) is False:
            return None
        if not isinstance(raw.get("path"), str) or not raw["path"]:
            self.fail(f"concepts[{index}].path", "is required")
            return None
        at = f"concepts[{index}]."
        sub = _Reader(raw, self.base_dir)
        image = _Reader(raw.get("image") if isinstance(raw.get("image"), dict) else {}, self.base_dir)
        text = _Reader(raw.get("text") if isinstance(raw.get("text"), dict) else {}, self.base_dir)
        spec = ConceptSpec(
            path=self.resolve(raw["path"]), name=str(raw.get("name") or ""),
            include_subdirectories=sub.flag("include_subdirectories", False),
            balancing=sub.number("balancing", 1.0, minimum=0, exclusive=True),
            balancing_strategy=sub.choice("balancing_strategy", "REPEATS", SUPPORTED_BALANCING),
            loss_weight=sub.number("loss_weight", 1.0, minimum=0),
            seed=int(sub.number("seed", 0, integer=True)),
            image_variations=int(sub.number("image_variations", 1, minimum=1, integer=True)),
            text_variations=int(sub.number("text_variations", 1, minimum=1, integer=True)),
            random_flip=image.flag("enable_random_flip", False),
            crop_jitter=image.flag("enable_crop_jitter", True),
            prompt_source=text.choice("prompt_source", "sample", SUPPORTED_PROMPT_SOURCES),
            prompt_path=text.text("prompt_path", ""),
            tag_shuffling=text.flag("enable_tag_shuffling", False),
            tag_delimiter=text.text("tag_delimiter", ",") or ",",
            keep_tags_count=int(text.number("keep_tags_count", 1, minimum=0, integer=True)),
            tag_dropout=text.flag("tag_dropout_enable", False),
            tag_dropout_mode=text.choice("tag_dropout_mode", "FULL", SUPPORTED_TAG_DROPOUT_MODES),
            tag_dropout_probability=text.number("tag_dropout_probability", 0.0, minimum=0))
        if spec.prompt_source == "concept":
            if not spec.prompt_path:
                text.fail("prompt_path", "is required when prompt_source is \"concept\"")
            else:
                spec.prompt_path = self.resolve(spec.prompt_path)
        for reader, prefix in ((sub, at), (image, at + "image."), (text, at + "text.")):
            self.errors += [{**e, "field": prefix + e["field"]} for e in reader.errors]
        return spec

    def samples(self) -> list[SampleSpec]:
        specs = []
        for index, raw in enumerate(self._list_or_file("samples", "sample_definition_file_name")):
            if raw.get("enabled", True) is False:
                continue
            try:
                specs.append(SampleSpec.from_onetrainer(raw))
            except (TypeError, ValueError) as exc:
                where = ".noise_scheduler" if "noise_scheduler" in str(exc) else ""
                self.fail(f"samples[{index}]{where}", str(exc))
        return specs
