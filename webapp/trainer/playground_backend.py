"""The playground backend: a trained LoRA on its base model, sampling prompts on request.

A playground is a job like a run (the worker hosts it in a trainer process, one GPU job at a
time), chosen by the config marker ``{"__playground__": {"lora": ..., "base_model_name": ...}}``.
It loads the base model and the LoRA (diffusers' ``load_lora_weights``), then waits for
commands: each ``sample_custom`` (with its ``lora_scale``) and ``sample_default`` becomes a
sample event exactly as in a run, so the feed, the gallery and the image routes serve it
unchanged. It ends on ``stop`` or after ``idle_s`` (10 minutes) without a command, and frees
the model.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path

import torch

from webapp.protocol import PLAYGROUND_MARKER, Event

MARKER = PLAYGROUND_MARKER
IDLE_S = 600.0
POLL_S = 0.1


class PlaygroundBackend:
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path):
        spec = config[MARKER]
        self.callbacks, self.commands, self.run_dir = callbacks, commands, Path(run_dir)
        base = Path(spec["base_model_name"])
        self.base_model = base if base.is_absolute() else Path(base_dir) / base
        self.lora = Path(spec["lora"])
        self.resolution = int(spec.get("resolution") or 512)
        self.idle_s = float(spec.get("idle_s") or IDLE_S)
        self.default_samples = list(spec.get("samples") or [])
        self.device_name = str(spec.get("train_device") or "")
        self.model_type = str(spec.get("model_type") or "STABLE_DIFFUSION_15")
        self.parts = self.sampler = self.device = None
        self.count = 0

    def start(self) -> None:
        from webapp.trainer.builtin.families import load_model
        from webapp.trainer.builtin.device import pick_device
        from webapp.trainer.builtin.sampling import Sampler
        self.device, note = pick_device(self.device_name)
        if note:
            self.callbacks.log(note, "warning")
        if not self.lora.is_file():
            raise FileNotFoundError(f"the LoRA file {self.lora} does not exist any more")
        self.callbacks.status("loading model")
        self.parts = load_model(str(self.base_model), self.model_type, self.device)
        self.sampler = Sampler(self.parts, self.device, self.run_dir, self.callbacks, self.resolution,
                               training=False)
        pipeline = self.sampler.pipeline()
        self.callbacks.status("loading LoRA")
        pipeline.load_lora_weights(str(self.lora.parent), weight_name=self.lora.name, adapter_name="playground")
        self.parts.unet.eval()
        self.callbacks.log(f"playground: {self.lora.name} on {self.base_model.name} ({self.device}); "
                           f"closes after {self.idle_s:.0f} s without a request")

    def train(self) -> None:
        """The request loop (named as a backend's: the trainer process calls start, train, end)."""
        self.callbacks.status("ready")
        last = time.monotonic()
        stopped = False
        while True:
            self.commands.poll()
            if self.commands.stop_requested:
                stopped = True
                break
            requests = self.commands.take_custom_samples()
            defaults = self.commands.take_sample_default()
            if requests or defaults:
                self._sample(Event.SAMPLE_CUSTOM, requests)
                if defaults:
                    self._sample(Event.SAMPLE_DEFAULT, self.default_samples)
                last = time.monotonic()
            elif time.monotonic() - last >= self.idle_s:
                self.callbacks.log(f"playground idle for {self.idle_s:.0f} s: closing", "info")
                break
            else:
                time.sleep(POLL_S)
        self.callbacks.status("closed")
        self.callbacks.finished(stopped=stopped, output=None)

    def _sample(self, kind: Event, requests: list[dict]) -> None:
        if not requests:
            return
        self.callbacks.status("sampling")
        with torch.no_grad():
            # the step counter of a playground: images made so far (the gallery's columns)
            for request in requests:
                self.sampler.sample_all(kind, [request], self.count, 0)
                self.count += 1
        self.callbacks.status("ready")

    def end(self) -> None:
        self.parts = self.sampler = None
        gc.collect()
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.empty_cache()
