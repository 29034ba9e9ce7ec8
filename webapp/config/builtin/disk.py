"""How much disk a run of the built-in trainer will want, so that a start can be refused while the
workspace has too little, rather than failing at the first backup hours in.

A rough, generous estimate from what is on disk already: the base model's size stands for a
fine-tune's output; a LoRA or an embedding is a small fraction of it; a backup holds the trained
weights and two optimizer moments (AdamW), so about three outputs; samples, logs and caches get a
fixed allowance. Torch-free: the web calls it.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ALLOWANCE = 16 * 2**20        # samples, the trainer log, TensorBoard, small caches
ADAPTER_FRACTION = 0.02       # a LoRA or an embedding against the base model's size
BACKUPS_WITHOUT_ROLLING = 3   # what to plan for when every backup is kept


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


def needed_bytes(settings) -> int:
    """``settings``: config.builtin.settings.TrainSettings."""
    base = path_size(Path(settings.base_model_name))
    output = base if settings.training_method == "FINE_TUNE" else int(base * ADAPTER_FRACTION) + 2**20
    backups = 0
    if settings.backup_after_unit != "NEVER":
        backups = settings.rolling_backup_count if settings.rolling_backup else BACKUPS_WITHOUT_ROLLING
    return output + backups * 3 * output + ALLOWANCE


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
