"""Where the OneTrainer backend meets OneTrainer's objects, beyond its callbacks: the loss and
learning rate it writes to TensorBoard, its checks before a run, its git calls, and its end after
a stop.

Runs in the trainer process only, after OneTrainer was imported from its checkout.
"""
from __future__ import annotations

import gc
import shutil
from pathlib import Path

LOSS_TAG = "loss/train_step"  # OneTrainer's scalar for the loss of one optimizer step
LR_PREFIX = "lr/"             # its learning rates, one per parameter group ("lr/unet", ...)


class ScalarTap:
    """Stands in front of OneTrainer's SummaryWriter: keeps the newest loss and learning rate it
    is given, then passes every call on. OneTrainer computes both once per optimizer step and
    hands them only to TensorBoard; reading them here costs a dict lookup, not a second .item()."""

    def __init__(self, writer):
        self._writer = writer
        self.loss: float | None = None
        self.lr: float | None = None

    def add_scalar(self, tag, scalar_value, *args, **kwargs):
        if tag == LOSS_TAG:
            self.loss = _number(scalar_value)
        elif self.lr is None and isinstance(tag, str) and tag.startswith(LR_PREFIX):
            self.lr = _number(scalar_value)  # the first group's: the UNet's or the transformer's
        return self._writer.add_scalar(tag, scalar_value, *args, **kwargs)

    def take(self) -> tuple[float | None, float | None]:
        """The loss and LR of the step just reported (None on an accumulation step)."""
        found = self.loss, self.lr
        self.loss = self.lr = None
        return found

    def __getattr__(self, name):
        return getattr(self._writer, name)


def _number(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def tap_scalars(trainer) -> ScalarTap | None:
    """Put a ScalarTap in front of the trainer's TensorBoard writer (None: it has none)."""
    writer = getattr(trainer, "tensorboard", None)
    if writer is None:
        return None
    tap = ScalarTap(writer)
    trainer.tensorboard = tap
    return tap


def preflight(train_config) -> None:
    """What OneTrainer would fail on only at the end (its saver) or deep in loading, checked with
    its own enums before the model loads. The web checks the same (config/onetrainer_rules.py);
    this covers a config queued by another web host or before a checkout changed."""
    supported = getattr(train_config.model_type, "supported_output_formats", None)
    formats = supported(train_config.training_method) if supported else None  # None: an older OneTrainer
    if formats is not None and train_config.output_model_format not in formats:
        names = ", ".join(f.name for f in formats)
        raise ValueError(f"output_model_format: OneTrainer cannot save a {train_config.training_method.name} of "
                         f"{train_config.model_type.name} as {train_config.output_model_format.name}; "
                         f"pick one of {names}")
    import torch
    for field in ("train_device", "temp_device"):
        device = getattr(train_config, field, None)
        if device is None:
            continue
        try:
            parsed = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"{field}: {device!r} is not a torch device ({exc})") from None
        if parsed.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{field}: {device!r} asks for CUDA, which this worker's torch does not have; "
                             "set it to 'cpu' or run the worker on a GPU host")


def quiet_git(onetrainer_dir: Path, version: str) -> None:
    """OneTrainer stamps saved models with ``git rev-parse`` output. In a checkout without .git
    that prints "fatal: not a git repository" into the log, and without a git binary it raises
    FileNotFoundError inside the saver, at the end of a run. Then answer with what is known."""
    if (Path(onetrainer_dir) / ".git").exists() and shutil.which("git"):
        return
    try:
        from modules.util import git_util
    except ImportError:
        return  # a OneTrainer that does not call git
    git_util.get_git_branch = lambda: "unknown"
    git_util.get_git_revision = lambda: version


def skip_full_collections() -> None:
    """Before OneTrainer's end() after a stop. It evicts the model twice there, and each eviction
    runs gc.collect(), a full collection over every object the process holds (torch, diffusers,
    transformers, the model): 0.3 s each on an idle 2-core CPU, over a second on a busy one, most
    of a stop's time. Freezing what exists now leaves those collections only the objects made
    since. What this keeps is garbage in reference cycles made before the stop, which the process's
    exit frees a moment later anyway (on a GPU, memory such a cycle holds stays allocated through
    the save); the final save itself runs in full, so the user's work is kept."""
    gc.freeze()
