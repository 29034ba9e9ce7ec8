"""How much disk a run of the built-in trainer will want, so that a start can be refused while the
workspace has too little, rather than failing at the first backup hours in.

A rough, generous estimate from what is on disk already: the base model's size stands for a
fine-tune's output; a LoRA or an embedding is a small fraction of it; a backup holds the trained
weights and two optimizer moments (AdamW), so about three outputs; a sample is an uncompressed PNG
at worst; logs and caches get a fixed allowance. Counts of backups, saves and samples follow from
the dataset's size, the epochs and the batch size when their unit is steps or epochs. Torch-free:
the web calls it.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from webapp.config.builtin.train_settings import ConceptSpec
from webapp.config.datasets import image_files

ALLOWANCE = 16 * 2**20        # the trainer log, TensorBoard, small caches
ADAPTER_FRACTION = 0.02       # a LoRA or an embedding against the base model's size
BACKUPS_UNTIMED = 3           # backups planned for when their count cannot be known ahead (time units)
SAMPLE_BYTES_PER_PIXEL = 3    # a PNG at worst: RGB, uncompressed
SCAN_S = 1.0                  # at most this long counting a dataset's images for a start


def path_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total


def planned_steps(settings) -> int:
    """Optimizer steps of the whole run: epochs times the batches of one epoch (each concept's
    images, repeated by its balancing)."""
    items = 0
    for concept in settings.concepts or [ConceptSpec(path) for path in settings.concept_paths]:
        try:
            found, _ = image_files(Path(concept.path), concept.include_subdirectories, seconds=SCAN_S)
        except OSError:
            continue
        repeats = concept.balancing if concept.balancing_strategy == "REPEATS" else 1
        items += math.ceil(len(found) * max(repeats, 0) * max(concept.image_variations, 1))
    return settings.epochs * max(1, math.ceil(items / max(settings.batch_size, 1)))


def times(every: float, unit: str, settings, steps: int, untimed: int) -> int:
    """How often something done every ``every`` ``unit`` happens in the run; ``untimed`` when
    the unit is time (the run's length is not known ahead)."""
    if unit == "NEVER":
        return 0
    if unit == "ALWAYS":
        return steps
    if unit in ("EPOCH", "STEP") and every > 0:
        return int((settings.epochs if unit == "EPOCH" else steps) // every)
    return untimed


def needed_bytes(settings) -> int:
    """``settings``: config.builtin.settings.TrainSettings. What the run keeps: its output (and
    each intermediate save), every backup when rolling backups are off (the rolling count when
    on; one more before the final save), and its samples."""
    base = path_size(Path(settings.base_model_name))
    output = base if settings.training_method == "FINE_TUNE" else int(base * ADAPTER_FRACTION) + 2**20
    steps = planned_steps(settings)
    backups = times(settings.backup_after, settings.backup_after_unit, settings, steps, BACKUPS_UNTIMED)
    backups += 1 if backups and settings.backup_before_save else 0
    if settings.rolling_backup:
        backups = min(backups, settings.rolling_backup_count)
    saves = times(settings.save_every, settings.save_every_unit, settings, steps, 0)
    rounds = times(settings.sample_after, settings.sample_after_unit, settings, steps, 0)
    rounds += 1 if settings.sample_before_training else 0
    sample = sum(spec.width * spec.height * SAMPLE_BYTES_PER_PIXEL for spec in settings.samples)
    return output * (1 + saves) + backups * 3 * output + rounds * sample + ALLOWANCE


def shortage(settings, folder: Path) -> str | None:
    """The message that refuses a start, or None when ``folder``'s disk has room."""
    needed = needed_bytes(settings)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free >= needed:
        return None
    return (f"only {free / 2**20:.0f} MiB free where runs are written ({folder}); this run needs about "
            f"{needed / 2**20:.0f} MiB (its output, backups and samples). Free some space, or keep fewer "
            "backups (rolling_backup_count).")
