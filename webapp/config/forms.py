"""The editor's form: which fields each tab shows (OneTrainer's grouping), and a posted form back
into a config.

The form holds every tab at once (the tabs only show and hide parts of it), so that a save keeps
what was typed on every tab. Inputs are named by the field's path (``unet.learning_rate``,
``concepts[2].path``), the same path the errors use. Form text becomes typed values here; a value
that reads the same as the one already in the config keeps the config's own (10 stays 10, not 10.0).
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field

from webapp.config.loading import ConfigFormatError, parse_json
from webapp.config.train_config import CONCEPT, SAMPLE, Field, field_at


@dataclass(frozen=True)
class Tab:
    key: str
    title: str
    fields: tuple[str, ...]
    editor: str = ""            # a list editor shown on this tab: "concepts" or "samples"


TABS = (
    # what a person sets first (the base model, the length of training; the dataset is shown beside
    # them from the Concepts tab), then where files go, debugging and TensorBoard
    Tab("general", "General", (
        "base_model_name", "epochs", "workspace_dir", "cache_dir", "continue_last_backup", "only_cache", "debug_mode",
        "debug_dir",
        "tensorboard", "tensorboard_expose", "dataloader_threads", "train_device", "temp_device",
        "validation", "validate_after", "validate_after_unit")),
    Tab("model", "Model", (
        "model_type", "training_method", "unet.weight_dtype", "text_encoder.weight_dtype",
        "text_encoder_2.weight_dtype", "vae.weight_dtype", "output_model_destination", "output_model_format",
        "output_dtype", "include_train_config")),
    Tab("data", "Data", ("aspect_ratio_bucketing", "latent_caching", "clear_cache_before_training")),
    Tab("concepts", "Concepts", ("concept_file_name",), editor="concepts"),
    Tab("training", "Training", (
        "optimizer.optimizer", "learning_rate_scheduler", "learning_rate", "learning_rate_warmup_steps",
        "learning_rate_cycles", "batch_size", "gradient_accumulation_steps", "clip_grad_norm",
        "train_dtype", "fallback_train_dtype", "resolution", "ema", "ema_decay",
        "unet.train", "unet.learning_rate", "unet.stop_training_after", "unet.stop_training_after_unit",
        "text_encoder.train", "text_encoder.learning_rate", "text_encoder.stop_training_after",
        "text_encoder.stop_training_after_unit", "offset_noise_weight", "timestep_distribution",
        "loss_weight_fn", "masked_training")),
    Tab("sampling", "Sampling", (
        "sample_after", "sample_after_unit", "sample_skip_first", "sample_image_format", "non_ema_sampling",
        "samples_to_tensorboard", "sample_definition_file_name"), editor="samples"),
    Tab("backup", "Backup", (
        "backup_after", "backup_after_unit", "rolling_backup", "rolling_backup_count", "backup_before_save",
        "save_every", "save_every_unit", "save_skip_first", "save_filename_prefix")),
    Tab("lora", "LoRA", (
        "peft_type", "lora_model_name", "lora_rank", "lora_alpha", "lora_decompose", "lora_weight_dtype",
        "layer_filter_preset", "layer_filter", "layer_filter_regex", "bundle_additional_embeddings")),
)
TAB_KEYS = tuple(tab.key for tab in TABS)
ROW_FIELDS = {
    "concepts": ("enabled", "name", "path", "include_subdirectories", "balancing", "balancing_strategy",
                 "loss_weight", "text.prompt_source"),
    "samples": ("enabled", "prompt", "negative_prompt", "width", "height", "seed", "random_seed",
                "diffusion_steps", "cfg_scale", "noise_scheduler"),
}
ROW_SPECS = {"concepts": CONCEPT, "samples": SAMPLE}
ROW_MARKER = re.compile(r"^(concepts|samples)\[(\d+)\]\.__json$")
WHOLE = re.compile(r"^[+-]?\d+$")
PATH_STEP = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")


def get_at(config, path: str):
    value = config
    for name, index in PATH_STEP.findall(path):
        value = value.get(name) if isinstance(value, dict) else None
        if index:
            value = value[int(index)] if isinstance(value, list) and int(index) < len(value) else None
    return value


def set_at(config: dict, path: str, value) -> None:
    steps = PATH_STEP.findall(path)
    target = config
    for name, index in steps[:-1]:
        target = target.setdefault(name, {}) if not index else get_at(target, f"{name}[{index}]")
        if not isinstance(target, dict):
            return
    target[steps[-1][0]] = value


def parse_value(spec: Field, text) -> tuple[object, str | None]:
    """A form's text as the field's type: (value, None) or (None, what is wrong)."""
    if spec.kind == "boolean":
        return text in ("on", "true", "1", "yes"), None
    text = "" if text is None else str(text)
    if spec.kind in ("integer", "number"):
        text = text.strip()
        if not text:
            return (None, None) if spec.nullable else (None, "is required")
        try:
            value = int(text) if WHOLE.match(text) else float(text)
        except ValueError:
            return None, "must be a whole number" if spec.kind == "integer" else "must be a number"
        if spec.kind == "integer" and isinstance(value, float):
            return (int(value), None) if math.isfinite(value) and value.is_integer() else (None, "must be a whole number")
        return value, None
    if spec.nullable and not text:
        return None, None
    return (text.strip() if spec.kind == "enum" else text), None


def check_text(path: str, text) -> str | None:
    """The error for one input's text, as the editor shows it while typing."""
    spec = field_at(path)
    if spec is None or spec.kind in ("object", "array", "any"):
        return "not a field of this form"
    value, error = parse_value(spec, text)
    if error:
        return error
    errors = spec.check(value, path)
    return errors[0]["message"] if errors else None


@dataclass
class FormResult:
    config: dict
    errors: dict[str, str] = field(default_factory=dict)   # path: message, for unreadable text
    texts: dict[str, str] = field(default_factory=dict)    # path: what was typed, where unreadable


def apply_form(base: dict, form) -> FormResult:
    """``base`` with the posted values; ``form`` is a MultiDict (a request's form)."""
    result = FormResult(copy.deepcopy(base))
    for tab in TABS:
        for path in tab.fields:
            if path in form or field_at(path).kind == "boolean":
                _apply(result, path, field_at(path), form.get(path))
    for name in ROW_FIELDS:
        if f"{name}.__list" in form:
            _apply_rows(result, base, name, form)
    return result


def _apply(result: FormResult, path: str, spec: Field, text) -> None:
    value, error = parse_value(spec, text)
    if error:
        result.errors[path], result.texts[path] = error, "" if text is None else str(text)
        return
    current = get_at(result.config, path)
    same = value == current and isinstance(value, bool) == isinstance(current, bool)
    if not same:
        set_at(result.config, path, value)


def _apply_rows(result: FormResult, base: dict, name: str, form) -> None:
    """The rows of a list editor. Each row carries its whole entry as JSON (``name[i].__json``), so
    that its settings the form does not show survive, and rows can be added and removed before a
    save; the row's inputs then overwrite what they show."""
    positions = sorted(int(m[2]) for m in map(ROW_MARKER.match, form.keys()) if m and m[1] == name)
    if not positions and base.get(name) is None:
        return  # no list, and none made: the config keeps reading its concepts/samples file
    rows = []
    for position in positions:
        try:
            item = parse_json(form.get(f"{name}[{position}].__json", ""))
        except ConfigFormatError:
            item = None
        rows.append(item if isinstance(item, dict) else ROW_SPECS[name].default_copy())
    result.config[name] = rows
    for index, position in enumerate(positions):
        for row_field in ROW_FIELDS[name]:
            form_path, path = f"{name}[{position}].{row_field}", f"{name}[{index}].{row_field}"
            spec = field_at(path)
            if form_path in form or spec.kind == "boolean":
                _apply(result, path, spec, form.get(form_path))


def new_concept(path: str) -> dict:
    concept = CONCEPT.default_copy()
    concept.update(path=path.strip(), name=path.strip().rstrip("/").rsplit("/", 1)[-1])
    return concept


def new_sample(prompt: str = "") -> dict:
    sample = SAMPLE.default_copy()
    sample["prompt"] = prompt
    return sample
