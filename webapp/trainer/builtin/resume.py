"""Resuming from a backup: which one, whether it fits the config, and the RNG states.

A backup fits when it was made for the same base model, model type, training method, LoRA
shape (rank, alpha, layers) and gradient accumulation; anything else would silently train something other than what the user
asked for, so it is refused with a message that names the difference.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from webapp.trainer.builtin import checkpoint
from webapp.trainer.builtin.safe_state import UnsafeStateError, load_state

MUST_MATCH = ("base_model_name", "model_type", "training_method", "lora_rank", "lora_alpha",
              "layer_filter", "layer_filter_preset", "gradient_accumulation_steps")


class ResumeError(ValueError):
    """The newest backup cannot continue this config."""


def newest_backup(run_dir: Path) -> Path | None:
    backups = checkpoint.complete_backups(run_dir)
    return backups[-1] if backups else None


def check_matches(backup: Path, config: dict) -> None:
    saved = json.loads((backup / checkpoint.CONFIG_FILE).read_text(encoding="utf-8"))
    differences = [f"{key} is {config.get(key)!r} here but {saved.get(key)!r} in the backup"
                   for key in MUST_MATCH if saved.get(key) != config.get(key)]
    if differences:
        raise ResumeError(f"the backup {backup.name} does not match this config: "
                          + "; ".join(differences)
                          + ". Start a new run, or set continue_last_backup to false.")


def read_progress(backup: Path) -> dict:
    return json.loads((backup / checkpoint.PROGRESS_FILE).read_text(encoding="utf-8"))


def read_training_state(backup: Path) -> dict:
    """Never unpickles what could run code: the safe format (safe_state.py), or a backup of the
    older format (optimizer.pt) through torch's restricted loader, which refuses anything but
    tensors and plain containers (the web sends only the safe format to another host)."""
    if (backup / f"{checkpoint.STATE_STEM}.json").is_file():
        try:
            return load_state(backup, checkpoint.STATE_STEM)
        except UnsafeStateError as exc:
            raise ResumeError(f"the backup {backup.name} cannot be read: {exc}") from exc
    if not (backup / checkpoint.OPTIMIZER_FILE).is_file():
        raise ResumeError(f"the backup {backup.name} has no training state: start a new run, or set "
                          "continue_last_backup to false")
    try:
        state = torch.load(backup / checkpoint.OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for what it refuses
        raise ResumeError(f"refused the backup {backup.name}: its {checkpoint.OPTIMIZER_FILE} holds more than "
                          f"tensors and plain values, and is not loaded ({str(exc).splitlines()[0][:200]})") from exc
    if not isinstance(state, dict):
        raise ResumeError(f"refused the backup {backup.name}: its {checkpoint.OPTIMIZER_FILE} is not a training state")
    if "optimizer" not in state:  # a backup from before the training state had its own keys
        state = {"optimizer": state}
    return state


def training_state(optimizer, lr_scheduler, scaler, noise_rng: torch.Generator, ema=None) -> dict:
    """What the backup's training state holds: everything but the weights that the next step depends on."""
    return {"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.state_dict() if ema is not None else None,
            "rng": rng_states(noise_rng)}


def load_training_state(backup: Path, optimizer, lr_scheduler, scaler,
                        noise_rng: torch.Generator, ema=None, rank: int = 0) -> None:
    """``rank``: with several ranks each takes its own RNG states (``rng_ranks``) when the
    backup has them for it."""
    state = read_training_state(backup)
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None and state.get("ema"):
        ema.load_state_dict(state["ema"])
    if state.get("lr_scheduler"):
        lr_scheduler.load_state_dict(state["lr_scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    per_rank = state.get("rng_ranks") or []
    set_rng_states(per_rank[rank] if rank < len(per_rank) else state.get("rng", {}), noise_rng)


def rng_states(noise_rng: torch.Generator) -> dict:
    states = {"noise": noise_rng.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict, noise_rng: torch.Generator) -> None:
    if "noise" in states:
        noise_rng.set_state(states["noise"])
    if "torch" in states:
        torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
