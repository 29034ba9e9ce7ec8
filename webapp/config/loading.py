"""From a file or a request body to a whole config, and back out as a packed config.

- ``parse_json``: JSON text to a value, refusing what OneTrainer could not read back (NaN,
  Infinity) and junk nested deeper than any config is.
- ``normalise``: migrate, then lay the user's keys over OneTrainer's defaults. Partial presets
  become whole configs; the user's keys and values, unknown ones included, are kept as they are.
- ``pack``: concepts and samples read from ``concept_file_name`` / ``sample_definition_file_name``
  and written inline, so that the config travels as one file (OneTrainer reads the inline lists
  first). Relative file names resolve against the workspace, as the trainer resolves them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from webapp.config import confined, paths
from webapp.config.migrate import migrate, migrate_concept
from webapp.config.train_config import CONCEPT, MAX_ITEMS, SAMPLE, TRAIN_CONFIG, ObjectSpec, json_copy

MAX_DEPTH = 32                  # a TrainConfig nests 4 deep; anything far deeper is junk
MAX_VALUES = 200_000            # values (and keys) in one JSON text: 1,000 concepts of a config hold about 60,000
KEYS_PER_ITEM = 10              # keys in one object per list entry allowed: 10,000 (a TrainConfig has about 200)
MAX_FILE_BYTES = 4 * 1024 * 1024
LIST_FILES = (("concepts", "concept_file_name", CONCEPT), ("samples", "sample_definition_file_name", SAMPLE))


class ConfigFormatError(ValueError):
    """Input that is not a config at all; ``errors`` is a list of {field, message}."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.errors = [{"field": field, "message": message}]


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: JSON allows the digits, but no config (or OneTrainer) can use them
        raise ValueError(f"{text[:20]} is too large a number")
    return value


def parse_json(text: str | bytes, max_items: int | None = MAX_ITEMS):
    """``max_items``: the longest list (and a tenth of the most keys) it may hold: a config's by
    default (``_too_many``); more for a JSON body that is no config (a chart's 20,000 points)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ConfigFormatError("the JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigFormatError(f"not valid JSON: {exc}") from None
    check_depth(value, max_items)
    return value


def _bad_text(text: str) -> bool:
    """A lone surrogate (\\ud800): valid JSON escapes, but no UTF-8 file or database can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _too_many(item, where: str, max_items: int) -> None:
    """A list longer than the model allows (or an object with more keys than any config has) is
    refused before anything else is done with it: walking 349,000 ``{}`` concepts, then laying
    defaults over each, took the web 15 s before the model's own check said no."""
    limit = max_items if isinstance(item, list) else max_items * KEYS_PER_ITEM
    if len(item) > limit:
        raise ConfigFormatError(f"has {len(item):,} entries; at most {limit:,} (nothing else was checked)", where)


def check_depth(value, max_items: int | None = MAX_ITEMS) -> None:
    """Refuse junk nested deeper than MAX_DEPTH, lists and objects with more entries than a config
    can hold (``_too_many``, named by their top-level key), and text that cannot be stored (lone
    surrogates)."""
    stack, seen = [(value, 1, "")], 0
    while stack:
        item, depth, where = stack.pop()
        seen += 1
        if seen > MAX_VALUES:  # the walk itself is work: bounded whatever the lists' lengths
            raise ConfigFormatError(f"holds more than {MAX_VALUES:,} values")
        if depth > MAX_DEPTH:
            raise ConfigFormatError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, str) and _bad_text(item):
            raise ConfigFormatError("the text holds an unpaired surrogate (not valid Unicode)")
        if max_items is not None and isinstance(item, (dict, list)):
            _too_many(item, where, max_items)
        if isinstance(item, dict):
            stack.extend((key, depth + 1, where) for key in item)
            stack.extend((child, depth + 1, where or str(key)) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, depth + 1, where) for child in item)


def overlay(spec: ObjectSpec, base: dict, user: dict) -> dict:
    """``base`` with ``user``'s keys laid over it; nested objects and list items merge by spec.
    (A copy: neither is changed. Base's keys keep their order, the user's new ones follow.)"""
    result = {key: value if key in user else json_copy(value) for key, value in base.items()}
    for key, value in user.items():
        found = spec.fields.get(key)
        nested = found.spec if found is not None else None
        if nested is not None and found.kind == "object" and isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = overlay(nested, result[key], value)
        elif nested is not None and found.kind == "array" and isinstance(value, list):
            result[key] = [overlay(nested, nested.defaults, item) if isinstance(item, dict) else json_copy(item)
                           for item in value]
        else:
            result[key] = json_copy(value)
    return result


def normalise(raw) -> tuple[dict, list[str]]:
    """A whole, current-version config from a full or partial one, and the migration notes."""
    if not isinstance(raw, dict):
        raise ConfigFormatError("a config is a JSON object")
    check_depth(raw)
    migrated, notes = migrate(raw)
    return overlay(TRAIN_CONFIG, TRAIN_CONFIG.defaults, migrated), notes


def resolve(path_text: str, base_dir: Path) -> Path:
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def read_list_file(path_text, base_dir: Path, roots=None) -> tuple[list | None, str | None]:
    """The list of objects in a concepts or samples file, or None and why not. Only inside the
    read roots (default: the workspace and OTWEB_DATA_ROOTS). Any file name: OneTrainer and the
    built-in trainer read a list whatever its name, so whatever its name it is inlined and its
    items checked like inline ones (a ``list.txt`` naming an outside folder is refused)."""
    if not isinstance(path_text, str) or "\x00" in path_text:
        return None, "must name a file"
    path = paths.readable(path_text, base_dir, roots if roots is not None else paths.read_roots(base_dir))
    if path is None:
        return None, f"{path_text} {paths.OUTSIDE_READ}"
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, f"{path_text} is larger than {MAX_FILE_BYTES // 2**20} MiB"
        items = parse_json(confined.read_bytes(path, roots if roots is not None else paths.read_roots(base_dir)))
    except OSError as exc:
        return None, f"cannot read {path_text}: {exc.strerror or exc}"
    except ConfigFormatError as exc:
        return None, f"{path_text}: {exc}"
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        return None, f"{path_text} does not hold a list of objects"
    return items, None


def pack(config: dict, base_dir: Path, roots=None) -> tuple[dict, list[dict]]:
    """The config with concepts and samples inline; warnings for list files that cannot be read
    (their inline list then stays as it was). ``roots``: where list files may be read from."""
    packed, warnings = json_copy(config), []
    for inline, file_key, spec in LIST_FILES:
        if packed.get(inline) is not None or not packed.get(file_key):
            continue
        items, problem = read_list_file(packed[file_key], base_dir, roots)
        if problem:
            warnings.append({"field": file_key, "message": problem})
            continue
        if inline == "concepts":
            items = [migrate_concept(item, [], f"{file_key}[{index}]") for index, item in enumerate(items)]
        packed[inline] = [overlay(spec, spec.defaults, item) for item in items]
    return packed, warnings


def settle_default_samples(config: dict, base_dir: Path) -> dict:
    """No inline samples and OneTrainer's default samples file, which does not exist: no samples.

    A partial config never names that file; laid over the defaults it does, and a run would fail
    on a file the user never asked for (OneTrainer's own UI creates it empty). A file the user
    named themselves stays a clear error."""
    default = TRAIN_CONFIG.defaults.get("sample_definition_file_name")
    if config.get("samples") is None and config.get("sample_definition_file_name") == default \
            and not resolve(default, base_dir).exists():
        return {**config, "samples": []}
    return config


def dumps(config: dict) -> str:
    """As OneTrainer writes its configs: indented by 4, keys in order."""
    return json.dumps(config, indent=4, ensure_ascii=False, allow_nan=False) + "\n"
