"""OneTrainer's own rules for a config, checked before a run on the OneTrainer backend is queued.

A config OneTrainer loads happily can still fail at the end of a run: its saver refuses a format
the training method cannot write (a LoRA as SAFETENSORS, its own default, trains every step and
then raises). Which formats each model type and method can save is OneTrainer's knowledge and
changes with its versions, so it is read from the checkout itself: ``ModelType.
supported_output_formats`` in ``modules/util/enum/``, plain enum modules that import nothing but
each other (no torch). The dtype choices are those its editor offers per field, and the device a
torch device name; both are small and stable, so they are written here.

Answers are warnings with ``blocking: True`` (the config stays valid and can be saved, as
OneTrainer's own partial presets must; a run of it is refused) naming what to pick instead.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from webapp.config.builtin.backend_choice import DEFAULT_METHOD, DEFAULT_MODEL_TYPE, ONETRAINER

# the choices OneTrainer's editor offers (modules/ui/BaseTrainingTabView.py, BaseModelTabView.py)
DTYPE_CHOICES = {
    "train_dtype": ("FLOAT_32", "FLOAT_16", "BFLOAT_16", "TFLOAT_32"),
    "fallback_train_dtype": ("FLOAT_32", "BFLOAT_16"),
    "output_dtype": ("FLOAT_16", "FLOAT_32", "BFLOAT_16", "FLOAT_8", "NFLOAT_4"),
}
DEVICE = re.compile(r"^(cpu|cuda|mps|xpu)(:\d+)?$")
DEVICE_FIELDS = ("train_device", "temp_device")
PROBE_TIMEOUT_S = 30


class RulesUnavailable(Exception):
    """The checkout's enum modules could not be read (not a OneTrainer checkout, or too old)."""


@functools.lru_cache(maxsize=8)
def _read_formats(checkout: str, stamp: float) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(model type, method): formats it saves}, by asking OneTrainer's ModelType in a process of its
    own (config/onetrainer_probe.py): this process never imports OneTrainer's ``modules``."""
    try:
        done = subprocess.run([sys.executable, "-m", "webapp.config.onetrainer_probe", checkout],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, cwd=checkout,
                              env={**os.environ, "PYTHONPATH": _our_root()})
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        raise RulesUnavailable(f"the probe of {checkout} failed: {exc}") from None
    if "error" in answer:
        raise RulesUnavailable(answer["error"])
    return {(kind, way): tuple(formats) for kind, way, formats in answer["table"]}


def _our_root() -> str:
    """The folder holding the webapp package, for the probe (which runs from the checkout's folder)."""
    return str(Path(__file__).resolve().parents[2])


def output_formats(checkout: str | Path) -> dict[tuple[str, str], tuple[str, ...]]:
    """OneTrainer's table of output formats, cached while its ModelType.py is unchanged."""
    path = Path(checkout).expanduser().resolve()
    source = path / "modules/util/enum/ModelType.py"
    try:
        stamp = source.stat().st_mtime
    except OSError:
        raise RulesUnavailable(f"{source} is missing: not a OneTrainer checkout") from None
    return _read_formats(str(path), stamp)


def allowed_formats(config: dict, checkout: str | Path) -> tuple[str, ...] | None:
    """The formats OneTrainer can save this config's model type and method in (None: unknown)."""
    key = (config.get("model_type") or DEFAULT_MODEL_TYPE, config.get("training_method") or DEFAULT_METHOD)
    try:
        return output_formats(checkout).get(key)
    except RulesUnavailable:
        return None


def onetrainer_warnings(config: dict, checkout: str | Path, base_dir: Path) -> list[dict]:
    """Blocking warnings for what OneTrainer would refuse, each naming what to pick."""
    found = []

    def refuse(field: str, message: str) -> None:
        found.append({"field": field, "message": message, "backend": ONETRAINER, "blocking": True})

    model_type = config.get("model_type") or DEFAULT_MODEL_TYPE
    method = config.get("training_method") or DEFAULT_METHOD
    try:
        table = output_formats(checkout)
    except RulesUnavailable as exc:  # an older OneTrainer: its trainer process checks at start
        found.append({"field": "output_model_format", "backend": ONETRAINER, "blocking": False,
                      "message": f"OneTrainer's output formats could not be read from {checkout} ({exc}); "
                                 "the trainer checks them before it loads the model"})
        table = {}
    if not table:
        pass
    elif not any(kind == model_type for kind, _ in table):
        refuse("model_type", f"OneTrainer has no model type {model_type}")
    elif not table.get((model_type, method)):
        refuse("training_method", f"OneTrainer cannot train {model_type} with {method}")
    else:
        formats = table[(model_type, method)]
        chosen = config.get("output_model_format") or "SAFETENSORS"
        if chosen not in formats:
            refuse("output_model_format", f"OneTrainer cannot save a {method} of {model_type} as {chosen} "
                                          f"(its saver would fail after the last step): pick one of {', '.join(formats)}")
    for field, choices in DTYPE_CHOICES.items():
        value = config.get(field)
        if value is not None and value not in choices:
            refuse(field, f"OneTrainer does not take {value} here: pick one of {', '.join(choices)}")
    for field in DEVICE_FIELDS:
        value = config.get(field)
        if value is not None and not (isinstance(value, str) and DEVICE.match(value)):
            refuse(field, f"{value!r} is not a device: use cpu, cuda or cuda:N (mps, xpu)")
    return found + missing_folders(config, Path(base_dir))


def missing_folders(config: dict, base_dir: Path) -> list[dict]:
    """An enabled concept whose image folder is absent fails OneTrainer only when it caches."""
    found = []
    for index, concept in enumerate(config.get("concepts") or []):
        if isinstance(concept, dict) and concept.get("enabled", True) and concept.get("path"):
            if not (base_dir / Path(concept["path"]).expanduser()).is_dir():
                found.append({"field": f"concepts[{index}].path", "backend": ONETRAINER, "blocking": True,
                              "message": f"no image folder at {concept['path']}"})
    return found
