"""Older OneTrainer configs, brought to the current ``__version`` field by field.

Only names that changed are moved; every other key stays as the user wrote it. A key is moved
only when its new name is not already set, so running a migration twice changes nothing. Each
move is reported in words, for the editor and the API to show.
"""
from __future__ import annotations

from webapp.config.train_config import CONCEPT_VERSION, CURRENT_VERSION, json_copy

RENAMED = {"save_after": "save_every", "save_after_unit": "save_every_unit"}
# before model parts were nested objects, their settings were flat keys of the config
MODEL_PARTS = ("unet", "prior", "text_encoder", "text_encoder_2", "vae")
FLAT_PART_KEYS = {"train_{part}": "train", "{part}_learning_rate": "learning_rate",
                  "{part}_weight_dtype": "weight_dtype", "train_{part}_epochs": "stop_training_after"}


def version_of(obj: dict) -> int:
    version = obj.get("__version", 0)
    return version if isinstance(version, int) and not isinstance(version, bool) else 0


def migrate(raw: dict) -> tuple[dict, list[str]]:
    """A migrated copy of a TrainConfig dict and what was changed; ``raw`` is left as it was."""
    config, notes = json_copy(raw), []
    if version_of(config) < CURRENT_VERSION:
        for old, new in RENAMED.items():
            _move(config, old, new, notes)
        _nest_optimizer(config, notes)
        for part in MODEL_PARTS:
            _nest_part(config, part, notes)
        if "__version" in config or notes:
            config["__version"] = CURRENT_VERSION
    if isinstance(config.get("concepts"), list):
        config["concepts"] = [migrate_concept(c, notes, f"concepts[{i}]") if isinstance(c, dict) else c
                              for i, c in enumerate(config["concepts"])]
    return config, notes


def migrate_concept(concept: dict, notes: list[str], where: str = "concept") -> dict:
    concept = dict(concept)
    if version_of(concept) < CONCEPT_VERSION and "repeats" in concept and "balancing" not in concept:
        concept["balancing"] = concept.pop("repeats")
        concept.setdefault("balancing_strategy", "REPEATS")
        concept["__version"] = CONCEPT_VERSION
        notes.append(f"{where}.repeats is now {where}.balancing (strategy REPEATS)")
    return concept


def _move(config: dict, old: str, new: str, notes: list[str]) -> None:
    if old in config and new not in config:
        config[new] = config.pop(old)
        notes.append(f"{old} is now {new}")


def _nest_optimizer(config: dict, notes: list[str]) -> None:
    if isinstance(config.get("optimizer"), str):
        config["optimizer"] = {"__version": 0, "optimizer": config["optimizer"]}
        notes.append("optimizer (a name) is now optimizer.optimizer")


def _nest_part(config: dict, part: str, notes: list[str]) -> None:
    flat = {template.format(part=part): name for template, name in FLAT_PART_KEYS.items()}
    present = [key for key in flat if key in config]
    if not present or not isinstance(config.get(part, {}), dict):
        return
    nested = config.setdefault(part, {"__version": 0})
    for old in present:
        new = flat[old]
        if new not in nested:
            nested[new] = config.pop(old)
            notes.append(f"{old} is now {part}.{new}")
            if new == "stop_training_after":
                nested.setdefault("stop_training_after_unit", "EPOCH")
