"""`otweb train CONFIG`: one training in the terminal, no web, no worker — the same backend.

Ctrl-C once asks the trainer to stop gracefully (it saves); twice aborts.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from webapp.trainer.callbacks import TrainCallbacks
from webapp.trainer.commands import TrainCommands
from webapp.protocol import Event
from webapp.settings import CONFIG_NAME


class TerminalCallbacks(TrainCallbacks):
    """A progress bar and plain lines instead of events."""

    def __init__(self):
        self.bar = None

    def progress(self, *, global_step, max_step, epoch, max_epoch, epoch_step, epoch_length,
                 loss=None, lr=None) -> None:
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=max_step, unit="step", dynamic_ncols=True)
        self.bar.update(global_step - self.bar.n)
        self.bar.set_postfix(epoch=f"{epoch + 1}/{max_epoch}", loss=f"{loss:.4f}" if loss is not None else "-")

    def emit(self, event: Event, **data) -> None:
        if event in (Event.STATUS, Event.LOG, Event.ERROR, Event.FINISHED, Event.SAMPLE_DEFAULT,
                     Event.SAMPLE_CUSTOM):
            text = data.get("text") or data.get("message") or data.get("path") or data.get("output") or ""
            line = f"[{event.value}] {text}"
            (self.bar.write(line) if self.bar is not None else print(line, flush=True))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_in_terminal(config_path: Path, workspace: Path, quiet: bool = False) -> Path:
    from webapp.trainer.backend_factory import make_backend
    config = json.loads(Path(config_path).read_text())
    run_dir = workspace / "runs" / f"cli-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2))
    callbacks = TrainCallbacks() if quiet else TerminalCallbacks()
    commands = TrainCommands()

    def on_interrupt(signum, frame):
        print("\nstopping after this step (Ctrl-C again to abort)…", flush=True)
        commands.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_interrupt)
    backend = make_backend(config, callbacks, commands, run_dir=run_dir, base_dir=workspace)
    try:
        backend.start()
        backend.train()
    finally:
        backend.end()
        if isinstance(callbacks, TerminalCallbacks):
            callbacks.close()
    return run_dir
