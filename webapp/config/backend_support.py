"""What each training backend can honour of a well-formed config: warnings, never errors.

The built-in trainer's support lives in one place, ``config/builtin/train_settings.py`` (its supported
model types and methods, and the fields it reads). Rather than keep a second list here, the
check runs that reader on the config and records which keys it looks at: a setting that differs
from OneTrainer's default and that the reader never looked at is one the built-in trainer
ignores. What the reader refuses (a model type it cannot train, ...) comes back as warnings too:
the config is still valid for OneTrainer.
"""
from __future__ import annotations

import re
from pathlib import Path

from webapp.config.builtin.backend_choice import (BUILTIN, DEFAULT_METHOD, INSTALL_HINT, ONETRAINER, BackendChoice,
                                                  choose_backend, onetrainer_dir)
from webapp.config.builtin.train_settings import ConfigError, TrainSettings
from webapp.config.train_config import CONCEPT, SAMPLE, TRAIN_CONFIG, ObjectSpec
from webapp.config.builtin.output_formats import SUPPORTED_OUTPUT_FORMATS
from webapp.config.onetrainer_rules import DTYPE_CHOICES, allowed_formats, onetrainer_warnings

COSMETIC = {"__version", "concepts[*].name"}  # no effect on training: never worth a warning
INDEX = re.compile(r"\[\d+\]")


class _Recording(dict):
    """A dict that notes the dotted path of every key read from it (and from what it holds)."""

    def __init__(self, data: dict, path: str, seen: set):
        super().__init__(data)
        self._path, self._seen = path, seen

    def _note(self, key):
        path = f"{self._path}.{key}" if self._path else str(key)
        self._seen.add(path)
        return path

    def __getitem__(self, key):
        return _wrap(super().__getitem__(key), self._note(key), self._seen)

    def get(self, key, default=None):
        path = self._note(key)
        return _wrap(super().get(key, default), path, self._seen) if key in self else default


def _wrap(value, path: str, seen: set):
    if isinstance(value, dict):
        return _Recording(value, path, seen)
    if isinstance(value, list):
        return [_wrap(item, f"{path}[*]", seen) for item in value]
    return value


def backend_warnings(config: dict, base_dir: Path) -> tuple[BackendChoice, list[dict]]:
    """Which backend the config will run on (OneTrainer's availability read from this process's
    environment: see ``backend_choice``), and what that backend cannot honour."""
    choice = choose_backend(config, onetrainer_dir())
    if choice.backend == ONETRAINER:  # it reads every setting of its own format; some it refuses late
        return choice, onetrainer_warnings(config, onetrainer_dir(), base_dir)
    if choice.backend is None:
        return choice, [{"field": "backend", "message": choice.reason, "backend": ONETRAINER, "blocking": True}]
    warnings = builtin_warnings(config, base_dir)
    if not choice.builtin_supported and not choice.onetrainer_available:
        for warning in warnings:
            if warning["blocking"] and warning["field"] in ("model_type", "training_method"):
                warning["message"] += f"; OneTrainer trains it: {INSTALL_HINT}"
    return choice, warnings


def builtin_warnings(config: dict, base_dir: Path) -> list[dict]:
    """Warnings for the built-in trainer on a packed, well-formed config."""
    seen: set[str] = set()
    try:
        TrainSettings.from_config(_wrap(config, "", seen), Path(base_dir))
        refused = []
    except ConfigError as exc:
        refused = exc.errors
    except Exception as exc:  # noqa: BLE001 - a reader bug must not break validation
        refused = [{"field": "", "message": f"could not be checked ({exc})"}]
    # refusals block a run on the built-in trainer; ignored settings do not
    warnings = [{"field": e["field"], "message": _about_builtin(e["message"]), "backend": BUILTIN, "blocking": True}
                for e in refused]
    flagged = {w["field"] for w in warnings}
    for path in changed_paths(config):
        pattern = INDEX.sub("[*]", path)
        if pattern not in seen and pattern not in COSMETIC and path not in flagged:
            warnings.append({"field": path, "message": "not used by the built-in trainer (yet); kept for OneTrainer",
                             "backend": BUILTIN, "blocking": False})
    return warnings


def _about_builtin(message: str) -> str:
    return message if "built-in trainer" in message else f"the built-in trainer: {message}"


def changed_paths(config: dict) -> list[str]:
    """Dotted paths of the OneTrainer settings whose value differs from its default."""
    return _changed(TRAIN_CONFIG, config, TRAIN_CONFIG.defaults, "")


def _changed(spec: ObjectSpec, value: dict, base: dict, prefix: str) -> list[str]:
    paths = []
    for name, found in spec.fields.items():
        if name not in value:
            continue
        path, current, default = f"{prefix}{name}", value[name], base.get(name)
        if found.kind == "object" and found.spec is not None and isinstance(current, dict):
            paths += _changed(found.spec, current, default if isinstance(default, dict) else found.spec.defaults,
                              path + ".")
        elif found.spec in (CONCEPT, SAMPLE) and isinstance(current, list):
            for index, item in enumerate(current):
                if isinstance(item, dict):
                    paths += _changed(found.spec, item, found.spec.defaults, f"{path}[{index}].")
        elif current != default:
            paths.append(path)
    return paths


def offered_choices(config: dict, backend: str | None) -> dict[str, tuple[str, ...]]:
    """The values the editor offers for the fields whose choices depend on the backend that will
    run the config: only what that backend can honour (the current value stays selectable, with
    its warning, so that nothing changes behind the user's back)."""
    method = config.get("training_method") or DEFAULT_METHOD
    if backend == BUILTIN:
        formats = SUPPORTED_OUTPUT_FORMATS.get(method)
        return {"output_model_format": tuple(formats)} if formats else {}
    if backend == ONETRAINER:
        offered = dict(DTYPE_CHOICES)
        formats = allowed_formats(config, onetrainer_dir() or "")
        if formats:
            offered["output_model_format"] = tuple(formats)
        return offered
    return {}
