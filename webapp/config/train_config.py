"""The typed model of OneTrainer's TrainConfig and its nested objects.

The types are read off OneTrainer's defaults (our copy in defaults*.json: a bool default makes a
boolean field, a nested object a nested spec, ...) plus the tables below for what a default cannot
say: enums, whole numbers, ranges, fields whose default is null. One model gives the editor its
fields, the API its JSON schema, and every check its per-field errors. A config itself stays a
plain dict: the model checks and describes it, so unknown keys and the user's exact values survive.
"""
from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webapp.config.enums import NAME, Enum, enum_for
from webapp.config.help import FIELD_HELP

HERE = Path(__file__).resolve().parent
MAX_TEXT = 10_000      # characters in one text field
MAX_ITEMS = 1_000      # entries in one list (concepts, samples, ...)
MAX_ERRORS = 100

INTEGER_FIELDS = {
    "__version", "epochs", "batch_size", "gradient_accumulation_steps", "lora_rank", "rolling_backup_count",
    "dataloader_threads", "tensorboard_port", "sample_skip_first", "save_skip_first", "token_count",
    "image_variations", "text_variations", "keep_tags_count", "width", "height", "seed", "diffusion_steps",
    "svd_rank", "oft_block_size", "lokr_dim", "ema_update_step_interval", "async_gradient_reduce_buffer",
    "stop_training_after", "text_encoder_layer_skip", "text_encoder_sequence_length",
    "text_encoder_2_layer_skip", "text_encoder_2_sequence_length", "text_encoder_3_layer_skip",
    "text_encoder_4_layer_skip", "text_encoder_1_layer_skip", "text_encoder_1_sequence_length",
    "port", "volume_size",
}
NULLABLE_KINDS = {  # fields whose OneTrainer default is null: what they hold when set
    "custom_learning_rate_scheduler": "string", "embedding_learning_rate": "number", "learning_rate": "number",
    "stop_training_after": "integer", "cache_dir": "string", "muon_hidden_layers": "any",
    "text_encoder_1_sequence_length": "integer", "text_encoder_2_sequence_length": "integer",
}
ALSO_NULLABLE = {"clip_grad_norm", "stop_training_after"}  # null in some objects, set in others
POSITIVE, AT_LEAST_0, AT_LEAST_1, FRACTION = ({"minimum": 0, "exclusive_minimum": True}, {"minimum": 0},
                                              {"minimum": 1}, {"minimum": 0, "maximum": 1})
BOUNDS = {
    "learning_rate": POSITIVE, "embedding_learning_rate": POSITIVE, "lora_alpha": POSITIVE,
    "epochs": AT_LEAST_1, "batch_size": AT_LEAST_1, "gradient_accumulation_steps": AT_LEAST_1,
    "lora_rank": AT_LEAST_1, "rolling_backup_count": AT_LEAST_1, "dataloader_threads": AT_LEAST_1,
    "diffusion_steps": AT_LEAST_1, "width": AT_LEAST_1, "height": AT_LEAST_1, "image_variations": AT_LEAST_1,
    "text_variations": AT_LEAST_1, "token_count": AT_LEAST_1,
    "sample_after": AT_LEAST_0, "backup_after": AT_LEAST_0, "save_every": AT_LEAST_0, "validate_after": AT_LEAST_0,
    "sample_skip_first": AT_LEAST_0, "save_skip_first": AT_LEAST_0, "learning_rate_warmup_steps": AT_LEAST_0,
    "learning_rate_cycles": AT_LEAST_0, "stop_training_after": AT_LEAST_0, "clip_grad_norm": AT_LEAST_0,
    "cfg_scale": AT_LEAST_0, "balancing": AT_LEAST_0, "loss_weight": AT_LEAST_0, "__version": AT_LEAST_0,
    "ema_decay": FRACTION, "dropout_probability": FRACTION, "tensorboard_port": {"minimum": 1, "maximum": 65535},
}
RESOLUTION = re.compile(r"^\s*\d+(\s*x\s*\d+)?(\s*,\s*\d+(\s*x\s*\d+)?)*\s*$")
PATTERNS = {"resolution": (RESOLUTION, "one size (\"512\"), WxH (\"512x768\") or several, comma-separated")}
WORDS = {"lora": "LoRA", "ema": "EMA", "vae": "VAE", "unet": "UNet", "cfg": "CFG", "dtype": "data type",
         "lr": "LR", "tensorboard": "TensorBoard", "svd": "SVD", "oft": "OFT", "lokr": "LoKr"}
HELP = {
    "learning_rate": "e.g. 0.0003 or 3e-4",
    "resolution": PATTERNS["resolution"][1],
    "base_model_name": "a diffusers folder (relative paths: the workspace) or a Hugging Face id",
}


def label_for(name: str) -> str:
    words = [WORDS.get(word, word) for word in name.split("_")]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _error(path: str, message: str) -> dict:
    return {"field": path, "message": message}


def json_copy(value):
    """A deep copy of JSON-shaped data (dicts, lists, scalars): what copy.deepcopy gives for it, at
    a fraction of the cost (no memo, no dispatch per value). Anything else goes to deepcopy."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in (str, int, float, bool) or value is None:
        return value
    return copy.deepcopy(value)

@dataclass(frozen=True)
class Field:
    name: str
    kind: str                        # boolean integer number string enum object array any
    default: Any = None
    nullable: bool = False
    enum: Enum | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    pattern: tuple | None = None     # (compiled regex, what it means)
    spec: "ObjectSpec | None" = None  # an object field's spec, or an array's item spec

    @property
    def label(self) -> str:
        return label_for(self.name)

    @property
    def help(self) -> str:
        # one line per setting, for the editor and the schema
        return HELP.get(self.name) or FIELD_HELP.get(self.name, "")

    def check(self, value, path: str) -> list[dict]:
        if value is None:
            return [] if self.nullable or self.kind == "any" else [_error(path, "must be set (not null)")]
        message = self.value_error(value)
        if message:
            return [_error(path, message)]
        if self.spec is not None and self.kind == "object":
            return self.spec.check(value, path)
        if self.spec is not None and self.kind == "array":
            return [error for index, item in enumerate(value) for error in self.spec.check(item, f"{path}[{index}]")]
        return []

    def value_error(self, value) -> str | None:
        """What is wrong with this one value, nested objects aside; None when nothing is."""
        kind = self.kind
        if kind == "boolean":
            return None if isinstance(value, bool) else "must be true or false"
        if kind in ("integer", "number"):
            return self._number_error(value)
        if kind == "string":
            return self._text_error(value)
        if kind == "enum":
            return self.enum.error(value)
        if kind == "object":
            return None if isinstance(value, dict) else "must be an object"
        if kind == "array":
            if not isinstance(value, list):
                return "must be a list"
            return None if len(value) <= MAX_ITEMS else f"has more than {MAX_ITEMS} entries"
        return None

    def _number_error(self, value) -> str | None:
        whole = self.kind == "integer"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "must be a whole number" if whole else "must be a number"
        if whole and value != int(value):
            return "must be a whole number"
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                return f"must be greater than {self.minimum}"
            if value < self.minimum:
                return f"must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        return None

    def _text_error(self, value) -> str | None:
        if not isinstance(value, str):
            return "must be text"
        if len(value) > MAX_TEXT:
            return f"is too long (at most {MAX_TEXT} characters)"
        if "\x00" in value:
            return "must not contain NUL characters"
        if self.pattern and not self.pattern[0].match(value):
            return f"must be {self.pattern[1]}"
        return None

    def schema(self, defs: dict) -> dict:
        if self.kind in ("object", "array") and self.spec is not None:
            if self.spec.title not in defs:
                defs[self.spec.title] = {}  # placeholder first: specs may nest
                defs[self.spec.title] = self.spec.schema(defs)
            ref = {"$ref": f"#/$defs/{self.spec.title}"}
            base = ref if self.kind == "object" else {"type": "array", "items": ref, "maxItems": MAX_ITEMS}
        else:
            base = self._scalar_schema()
        if self.nullable:
            base = {"anyOf": [base, {"type": "null"}]}
        return {**base, "title": self.label, **({"description": self.help} if self.help else {}),
                **({"default": self.default} if self.kind != "object" else {})}

    def _scalar_schema(self) -> dict:
        if self.kind == "enum":
            names = list(self.enum.names)
            return ({"type": "string", "pattern": NAME.pattern, "examples": names} if self.enum.open
                    else {"type": "string", "enum": names})
        schema = {"any": {}, "object": {"type": "object"}, "array": {"type": "array"}}.get(self.kind, {"type": self.kind})
        if self.kind == "string":
            schema["maxLength"] = MAX_TEXT
            if self.pattern:
                schema["pattern"] = self.pattern[0].pattern
        if self.minimum is not None:
            schema["exclusiveMinimum" if self.exclusive_minimum else "minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


@dataclass
class ObjectSpec:
    title: str
    defaults: dict
    fields: dict[str, Field] = field(default_factory=dict)

    @property
    def version(self) -> int | None:
        return self.defaults.get("__version")

    def check(self, value, path: str = "") -> list[dict]:
        if not isinstance(value, dict):
            return [_error(path, "must be an object" if path else "a config is a JSON object")]
        errors = []
        for name, spec_field in self.fields.items():
            if name in value:
                errors += spec_field.check(value[name], f"{path}.{name}" if path else name)
        return errors[:MAX_ERRORS]

    def default_copy(self) -> dict:
        return json_copy(self.defaults)

    def schema(self, defs: dict) -> dict:
        return {"type": "object", "title": self.title, "additionalProperties": True,
                "properties": {name: f.schema(defs) for name, f in self.fields.items()}}


def build_spec(title: str, defaults: dict, nested: dict[str, "ObjectSpec"] | None = None) -> ObjectSpec:
    """A spec whose fields are read off ``defaults``; ``nested`` gives the specs of object and
    list-of-object fields by name."""
    nested = nested or {}
    spec = ObjectSpec(title, defaults)
    for name, default in defaults.items():
        spec.fields[name] = _field(title, name, default, nested.get(name))
    return spec


def _field(title: str, name: str, default, nested: ObjectSpec | None) -> Field:
    options: dict = dict(BOUNDS.get(name, {}))
    if name in PATTERNS:
        options["pattern"] = PATTERNS[name]
    enum = enum_for(title, name)
    if default is None:
        kind = "array" if nested else NULLABLE_KINDS.get(name, "number" if title == "OptimizerConfig" else "any")
        return Field(name, kind, None, nullable=True, spec=nested, **(options if kind != "any" else {}))
    if isinstance(default, bool):
        kind = "boolean"
    elif isinstance(default, (int, float)):
        kind = "integer" if name in INTEGER_FIELDS else "number"
    elif isinstance(default, str):
        kind = "enum" if enum else "string"
    elif isinstance(default, dict):
        kind = "object"
    else:
        kind = "array"
    return Field(name, kind, default, nullable=name in ALSO_NULLABLE, enum=enum if kind == "enum" else None,
                 spec=nested, **options)


def _read(name: str) -> dict:
    return json.loads((HERE / name).read_text(encoding="utf-8"))


def _build() -> tuple[ObjectSpec, ObjectSpec, ObjectSpec]:
    train, concept, sample = _read("defaults.json"), _read("defaults_concept.json"), _read("defaults_sample.json")
    part = build_spec("ModelPartConfig", train["unet"])
    embedding = build_spec("EmbeddingConfig", train["embedding"])
    concept_spec = build_spec("ConceptConfig", concept, {
        "image": build_spec("ConceptImageConfig", concept["image"]),
        "text": build_spec("ConceptTextConfig", concept["text"])})
    sample_spec = build_spec("SampleConfig", sample)
    secrets = build_spec("SecretsConfig", train["secrets"], {
        "cloud": build_spec("CloudSecretsConfig", train["secrets"]["cloud"])})
    nested = {name: part for name, value in train.items() if isinstance(value, dict) and "weight_dtype" in value}
    nested.update(quantization=build_spec("QuantizationConfig", train["quantization"]), embedding=embedding,
                  additional_embeddings=embedding, cloud=build_spec("CloudConfig", train["cloud"]),
                  optimizer=build_spec("OptimizerConfig", train["optimizer"]), secrets=secrets,
                  concepts=concept_spec, samples=sample_spec)
    return build_spec("TrainConfig", train, nested), concept_spec, sample_spec


TRAIN_CONFIG, CONCEPT, SAMPLE = _build()
CURRENT_VERSION = TRAIN_CONFIG.version
CONCEPT_VERSION = CONCEPT.version
PATH_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


def defaults() -> dict:
    """OneTrainer's TrainConfig defaults, a fresh copy."""
    return TRAIN_CONFIG.default_copy()


def json_schema() -> dict:
    defs: dict = {}
    root = TRAIN_CONFIG.schema(defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": defs}


def check(config) -> list[dict]:
    """Per-field errors of a whole config: [{field, message}], empty when it is well formed."""
    return TRAIN_CONFIG.check(config)


def field_at(path: str) -> Field | None:
    """The field at a dotted path such as ``unet.learning_rate`` or ``concepts[2].text.prompt_source``."""
    parts = path.split(".")
    spec, found = TRAIN_CONFIG, None
    for position, part in enumerate(parts):
        match = PATH_PART.match(part)
        found = spec.fields.get(match[1]) if spec is not None and match else None
        if found is None:
            return None
        last, indexed = position == len(parts) - 1, match[2] is not None
        into_list = found.kind == "array" and found.spec is not None and not last
        if indexed != into_list:
            return None
        spec = found.spec
    return found
