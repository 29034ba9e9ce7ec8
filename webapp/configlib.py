"""The config library as the rest of the app calls it: list and load by name.

The library itself lives in ``webapp/config/library.py``; these functions keep the callers that
only need a run's config (the dashboard, the start API, ``otweb train``) short. Names of shipped
presets read ``presets/<name>``.
"""
from __future__ import annotations

from pathlib import Path

from .config.library import (NAME_PATTERN, ConfigLibrary, ConfigNotFound,  # noqa: F401 - re-exported
                             InvalidConfigName, check_name)
from .config.migrate import migrate


def config_path(config_dir: Path, name: str) -> Path:
    return ConfigLibrary(config_dir).path(name)


def list_configs(config_dir: Path) -> list[str]:
    """The user's configs, then the presets."""
    return ConfigLibrary(config_dir).names()


def load_config(config_dir: Path, name: str) -> dict:
    """The config as its file holds it, with renamed fields of older versions migrated; unknown
    keys kept. ConfigNotFound, InvalidConfigName, or ValueError for a file that is no config."""
    config, _ = migrate(ConfigLibrary(config_dir).read(name).raw)
    return config
