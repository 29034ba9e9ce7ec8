"""TensorBoard scalars per step (loss, smoothed loss, learning rate, epoch) under the run folder.

Uses torch's SummaryWriter when the ``tensorboard`` package is installed (the trainer extra);
without it, one warning and nothing else. The writer queues events and writes them from its own
thread, so a step pays for a few appends; it is flushed and closed at the end.
"""
from __future__ import annotations

from pathlib import Path

SMOOTHING = 0.9  # the smoothed loss: an exponential moving average


class LossBoard:
    def __init__(self, run_dir: Path, enabled: bool, log):
        self.writer, self.smooth = None, None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log("tensorboard is set but the tensorboard package is not installed "
                "(pip install tensorboard); no TensorBoard logs for this run", "warning")
            return
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), flush_secs=30)

    def step(self, global_step: int, loss: float, lr: float, epoch: int) -> None:
        if self.writer is None:
            return
        self.smooth = loss if self.smooth is None else SMOOTHING * self.smooth + (1 - SMOOTHING) * loss
        self.writer.add_scalar("loss/train_step", loss, global_step)
        self.writer.add_scalar("smooth_loss/train_step", self.smooth, global_step)
        self.writer.add_scalar("lr/unet", lr, global_step)
        self.writer.add_scalar("epoch", epoch, global_step)

    def image(self, tag: str, path: Path, global_step: int) -> None:
        """A sample image under ``tag`` (samples_to_tensorboard)."""
        if self.writer is None:
            return
        import numpy as np
        from PIL import Image
        with Image.open(path) as image:
            self.writer.add_image(tag, np.asarray(image.convert("RGB")), global_step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
