"""The built-in trainer: a LoRA on a Stable Diffusion 1.x UNet, with OneTrainer's life cycle.

``start()`` loads the model and caches the data, ``train()`` runs the loop, ``end()`` frees
memory. Once per step the loop polls the commands (stop, sample, backup, save), trains one
batch, reports progress, then runs what the sample and backup schedules say is due.
"""
from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...trainsettings import TrainSettings
from ..protocol import Event
from . import checkpoint, dataset
from .model import add_lora, autocast_dtype, load_model, pick_device
from .sampling import Sampler, spec_request
from .schedule import Schedule


class BuiltinBackend:
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.run_dir, self.base_dir = Path(run_dir), Path(base_dir)
        self.settings = TrainSettings.from_config(config, base_dir)
        self.device, self._device_note = pick_device(self.settings.train_device)
        self.amp_dtype = autocast_dtype(self.device, self.settings.train_dtype)
        self.output_path = checkpoint.resolve_output(self.settings.output_model_destination,
                                                     self.run_dir)
        self.parts = self.data = self.optimizer = self.sampler = None
        self.global_step = self.epoch = self.epoch_step = 0
        self._in_loop = False

    # -- start: model, LoRA, data --
    def start(self) -> None:
        settings = self.settings
        if self._device_note:
            self.callbacks.log(self._device_note, "warning")
        self.callbacks.status("loading model")
        self.parts = load_model(settings.base_model_name, self.device)
        if self._stop_requested():
            return
        params = add_lora(self.parts.unet, settings.lora_rank, settings.lora_alpha, settings.seed)
        self.parts.unet.train()
        self.callbacks.status("preparing data")
        items = dataset.find_items(settings.concept_paths, self.callbacks.log)
        loaded = dataset.load_images(items, settings.resolution, self.callbacks.log,
                                     self._stop_requested)
        if loaded is None:
            return
        items, pixels = loaded
        if not items:
            raise ValueError(f"no usable images in {', '.join(settings.concept_paths)}")
        self.data = dataset.encode_dataset(self.parts, items, pixels, self.device,
                                           self._stop_requested)
        if self.data is None:
            return
        self.optimizer = torch.optim.AdamW(params, lr=settings.learning_rate)
        self.sampler = Sampler(self.parts, self.device, self.run_dir, self.callbacks,
                               settings.resolution)
        self.callbacks.log(f"{len(items)} images, {self.steps_per_epoch} steps per epoch, "
                           f"{self.max_step} steps on {self.device}; "
                           f"{sum(p.numel() for p in params)} LoRA parameters")

    def _stop_requested(self) -> bool:
        self.commands.poll()
        return self.commands.stop_requested

    @property
    def steps_per_epoch(self) -> int:
        return dataset.steps_per_epoch(len(self.data), self.settings.batch_size)

    @property
    def max_step(self) -> int:
        return self.settings.epochs * self.steps_per_epoch

    # -- train: the loop, then the final backup and save --
    def train(self) -> None:
        if self.data is None or self.optimizer is None:  # stopped while starting
            self.callbacks.status("done")
            self.callbacks.finished(stopped=True, output=None)
            return
        self.callbacks.status("training")
        self._in_loop = True
        stopped = self._loop()
        self._in_loop = False
        if self.settings.backup_before_save:
            self._backup()
        self.callbacks.status("saving")
        output = checkpoint.save_lora(self.parts.unet, self.output_path)
        self.callbacks.status("done")
        self.callbacks.finished(stopped=stopped, output=str(output))

    def _loop(self) -> bool:
        """True when a stop command ended it early."""
        settings, now = self.settings, time.monotonic()
        schedules = (
            Schedule(settings.sample_after, settings.sample_after_unit, self.steps_per_epoch,
                     settings.sample_skip_first, now),
            Schedule(settings.backup_after, settings.backup_after_unit, self.steps_per_epoch, 0, now))
        data_rng = torch.Generator().manual_seed(settings.seed)
        noise_rng = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        scaler = self._grad_scaler()
        for self.epoch in range(settings.epochs):
            self.epoch_step = 0
            batches = dataset.epoch_batches(len(self.data), settings.batch_size, data_rng)
            for index in batches:
                if self._stop_requested():
                    return True
                self._run_commands()
                loss = self._train_step(index, noise_rng, scaler)
                self.global_step += 1
                self.epoch_step += 1
                self._report(loss, len(batches))
                self._run_schedules(*schedules)
        self.commands.poll()
        self._run_commands()  # requests that came in during the last step
        return False

    def _train_step(self, index: torch.Tensor, noise_rng: torch.Generator, scaler) -> float:
        unet, scheduler = self.parts.unet, self.parts.scheduler
        latents, conditions = self.data.latents[index], self.data.embeddings[index]
        noise = torch.randn(latents.shape, generator=noise_rng, device=self.device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),),
                                  generator=noise_rng, device=self.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with self._autocast():
            prediction = unet(noisy, timesteps, conditions).sample
        loss = F.mse_loss(prediction.float(), noise)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(self.optimizer)
            scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()  # the one sync per step

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _grad_scaler(self):
        return torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None

    def _report(self, loss: float, epoch_length: int) -> None:
        self.callbacks.progress(
            global_step=self.global_step, max_step=self.max_step, epoch=self.epoch,
            max_epoch=self.settings.epochs, epoch_step=self.epoch_step,
            epoch_length=epoch_length, loss=loss, lr=self.optimizer.param_groups[0]["lr"])

    # -- commands and schedules --
    def _run_commands(self) -> None:
        if self.commands.take_sample_default():
            self._sample_default()
        custom = self.commands.take_custom_samples()
        if custom:
            self._sample(Event.SAMPLE_CUSTOM, custom)
        if self.commands.take_backup():
            self._backup()
        if self.commands.take_save():
            self._save_intermediate()

    def _run_schedules(self, sample_schedule: Schedule, backup_schedule: Schedule) -> None:
        now = time.monotonic()
        if sample_schedule.due(self.global_step, now):
            self._sample_default()
        if backup_schedule.due(self.global_step, now):
            self._backup()

    def _sample_default(self) -> None:
        requests = [spec_request(spec) for spec in self.settings.samples]
        if not requests:
            self.callbacks.log("no samples are defined in the config", "warning")
            return
        self._sample(Event.SAMPLE_DEFAULT, requests)

    def _sample(self, kind: Event, requests: list[dict]) -> None:
        self.callbacks.status("sampling")
        self.sampler.sample_all(kind, requests, self.global_step, self.epoch)
        self._resume_status()

    def _backup(self) -> None:
        self.callbacks.status("creating backup")
        progress = {"epoch": self.epoch, "epoch_step": self.epoch_step,
                    "global_step": self.global_step, "max_step": self.max_step,
                    "max_epoch": self.settings.epochs}
        folder = checkpoint.write_backup(self.run_dir, self.parts.unet, self.optimizer,
                                         progress, self.config)
        self.callbacks.log(f"backup written: {folder.relative_to(self.run_dir).as_posix()}")
        self._resume_status()

    def _save_intermediate(self) -> None:
        self.callbacks.status("saving")
        name = f"{checkpoint.timestamp()}-step{self.global_step}{self.output_path.suffix}"
        path = checkpoint.save_lora(self.parts.unet, self.run_dir / "saves" / name)
        self.callbacks.log(f"saved: {path.relative_to(self.run_dir).as_posix()}")
        self._resume_status()

    def _resume_status(self) -> None:
        if self._in_loop:
            self.callbacks.status("training")

    # -- end --
    def end(self) -> None:
        self.parts = self.data = self.optimizer = self.sampler = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
