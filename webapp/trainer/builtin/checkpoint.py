"""Backups (what trains, the optimizer and RNG states, the progress and the config), each built
in a temporary place first and renamed into place; where outputs go.

A backup's weights are the trained tensors only (``trained.safetensors``, keyed
``<group>/<parameter name>``: LoRA adapters, fine-tuned parts or embedding vectors), so that a
resume puts exactly those back; the final model files are written by outputs.py.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from webapp.protocol import BACKUP_COMPLETE_FILE, BACKUP_STATE_STEM
from webapp.settings import CONFIG_NAME
from webapp.trainer.builtin.safe_state import save_state

TRAINED_FILE = "trained.safetensors"
STATE_STEM = BACKUP_STATE_STEM  # training_state.safetensors + training_state.json (safe_state.py)
OPTIMIZER_FILE = "optimizer.pt"  # the pickled training state of backups written before: read on their host only
PROGRESS_FILE = BACKUP_COMPLETE_FILE  # written last: its presence marks the folder complete
CONFIG_FILE = CONFIG_NAME  # beside a backup's weights, as in the run folder


def unique_folder(parent: Path, name: str) -> Path:
    candidate, counter = parent / name, 1
    while candidate.exists():
        counter += 1
        candidate = parent / f"{name}-{counter}"
    return candidate


def timestamp() -> str:
    return time.strftime("%Y-%m-%d_%H-%M-%S")


def save_trained(groups, path: Path) -> None:
    tensors = {}
    for group in groups:
        tensors.update({key: value.to("cpu", torch.float32).contiguous() for key, value in group.tensors().items()})
    save_file(tensors, str(path))


@torch.no_grad()
def load_trained(groups, path: Path) -> None:
    """Put the tensors of a backup back into the trained parameters (exactly)."""
    if not Path(path).is_file():
        raise ValueError(f"{Path(path).parent.name} has no {TRAINED_FILE} (a backup of an older "
                         "version): start a new run, or set continue_last_backup to false")
    saved = load_file(str(path))
    wanted = {f"{group.name}/{key}": param for group in groups for key, param in group.params.items()}
    missing = sorted(set(wanted) - set(saved))
    unexpected = sorted(set(saved) - set(wanted))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit what this config trains (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    for key, param in wanted.items():
        param.copy_(saved[key].to(param.device, param.dtype))


def write_backup(run_dir: Path, groups, training_state: dict, progress: dict, config: dict) -> Path:
    """``run_dir/backups/<timestamp>-step<N>/`` with the trained tensors, the training state (optimizer,
    LR scheduler and RNG states: safetensors + JSON, never a pickle), the progress and the config; built in a
    hidden temp folder, then renamed: a crash mid-way leaves the previous backups whole."""
    backups = Path(run_dir) / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    final = unique_folder(backups, f"{timestamp()}-step{progress['global_step']}")
    temp = Path(tempfile.mkdtemp(dir=backups, prefix=f".{final.name}."))
    try:
        save_trained(groups, temp / TRAINED_FILE)
        save_state(training_state, temp, STATE_STEM)
        (temp / PROGRESS_FILE).write_text(json.dumps(progress, indent=2), encoding="utf-8")
        (temp / CONFIG_FILE).write_text(json.dumps(config, indent=4, default=str), encoding="utf-8")
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def complete_backups(run_dir: Path) -> list[Path]:
    """Finished backup folders (temp folders start with "."), oldest first by global step."""
    folder = Path(run_dir) / "backups"
    found = []
    for path in folder.iterdir() if folder.is_dir() else []:
        if path.name.startswith(".") or not (path / PROGRESS_FILE).is_file():
            continue
        try:
            step = int(json.loads((path / PROGRESS_FILE).read_text())["global_step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        found.append((step, path.stat().st_mtime_ns, path.name, path))
    return [entry[-1] for entry in sorted(found)]


def prune_backups(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; returns what went."""
    backups = complete_backups(run_dir)
    doomed = backups[:max(0, len(backups) - keep)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def resolve_output(destination: str, run_dir: Path, output_format: str = "SAFETENSORS") -> Path:
    """A relative ``output_model_destination`` lands in the run folder; an absolute one is
    used as is. A file name without a suffix gets ``.safetensors`` (``.ckpt`` for CKPT); a
    DIFFUSERS output is a folder (a suffix is dropped)."""
    path = Path(destination or "model.safetensors").expanduser()
    if not path.is_absolute():
        path = Path(run_dir) / path
    if output_format == "DIFFUSERS":
        return path.with_suffix("") if path.suffix in (".safetensors", ".ckpt") else path
    if not path.suffix:
        path = path.with_suffix(".ckpt" if output_format == "CKPT" else ".safetensors")
    return path
