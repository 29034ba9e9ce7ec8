"""The config library on disk (the configs folder): list and load by name, nothing outside it.

Only what a run needs today; the full library (save, rename, import, export) comes with the
config editor.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}$")


class ConfigNotFound(LookupError):
    pass


class InvalidConfigName(ValueError):
    pass


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise InvalidConfigName(f"{name!r} is not a config name (letters, digits, space, _ . -)")
    return name


def config_path(config_dir: Path, name: str) -> Path:
    return Path(config_dir) / f"{check_name(name)}.json"


def list_configs(config_dir: Path) -> list[str]:
    folder = Path(config_dir)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if NAME_PATTERN.match(p.stem))


def load_config(config_dir: Path, name: str) -> dict:
    path = config_path(config_dir, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigNotFound(f"no config named {name!r} in {config_dir}") from None
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError(f"{path.name} does not hold a JSON object")
    return config
