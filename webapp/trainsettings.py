"""The fields of OneTrainer's TrainConfig JSON that the built-in trainer reads, typed.

The config itself stays the user's dict (unknown keys kept, enums as names); this module only
reads it. Defaults follow OneTrainer's. The full config model and editor are a later step; this
one is what a run needs, with clear per-field errors for what the trainer cannot use.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

TIME_UNITS = ("EPOCH", "STEP", "SECOND", "MINUTE", "HOUR", "NEVER", "ALWAYS")
SUPPORTED_MODEL_TYPES = ("STABLE_DIFFUSION_15",)
SUPPORTED_METHODS = ("LORA",)


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

    @classmethod
    def from_onetrainer(cls, raw: dict) -> "SampleSpec":
        return cls(prompt=str(raw.get("prompt", "")),
                   negative_prompt=str(raw.get("negative_prompt", "")),
                   seed=int(raw.get("seed", 42)), random_seed=bool(raw.get("random_seed", False)),
                   steps=int(raw.get("diffusion_steps", raw.get("steps", 20))),
                   cfg_scale=float(raw.get("cfg_scale", 7.0)),
                   width=int(raw.get("width", 512)), height=int(raw.get("height", 512)))


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
        optimizer = (config.get("optimizer") or {}).get("optimizer", "ADAMW") if isinstance(config.get("optimizer"), dict) else "ADAMW"
        if optimizer != "ADAMW":
            reader.fail("optimizer.optimizer", f"the built-in trainer supports ADAMW for now, not {optimizer}")
        if not settings.concept_paths and not reader.errors:
            reader.fail("concepts", "no enabled concept with an image folder")
        if reader.errors:
            raise ConfigError(reader.errors)
        return settings


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

    def choice(self, name: str, default: str, allowed) -> str:
        value = self.config.get(name, default)
        if value not in allowed:
            self.fail(name, f"{value!r} is not supported by the built-in trainer; supported: {', '.join(allowed)}")
            return allowed[0]
        return value

    def resolution(self) -> int:
        value = str(self.config.get("resolution", "512")).strip()
        if not value.isdigit() or int(value) < 8 or int(value) % 8:
            self.fail("resolution", "the built-in trainer needs one square size, a multiple of 8, e.g. \"512\"")
            return 512
        return int(value)

    def _list_or_file(self, inline_key: str, file_key: str) -> list:
        items = self.config.get(inline_key)
        if items is None and self.config.get(file_key):
            try:
                items = json.loads(Path(self.resolve(self.config[file_key])).read_text())
            except (OSError, ValueError) as exc:
                self.fail(file_key, f"cannot read {self.config[file_key]}: {exc}")
                return []
        if items is None:
            return []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            self.fail(inline_key, "must be a list of objects")
            return []
        return items

    def concept_paths(self) -> list[str]:
        paths = []
        for index, concept in enumerate(self._list_or_file("concepts", "concept_file_name")):
            if concept.get("enabled", True) is False:
                continue
            if not isinstance(concept.get("path"), str) or not concept["path"]:
                self.fail(f"concepts[{index}].path", "is required")
                continue
            paths.append(self.resolve(concept["path"]))
        return paths

    def samples(self) -> list[SampleSpec]:
        specs = []
        for index, raw in enumerate(self._list_or_file("samples", "sample_definition_file_name")):
            if raw.get("enabled", True) is False:
                continue
            try:
                specs.append(SampleSpec.from_onetrainer(raw))
            except (TypeError, ValueError) as exc:
                self.fail(f"samples[{index}]", str(exc))
        return specs
