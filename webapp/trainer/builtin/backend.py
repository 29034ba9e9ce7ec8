"""The built-in trainer: a LoRA on a Stable Diffusion 1.x UNet, with OneTrainer's life cycle.

``start()`` loads the model, finds the concepts' images, fills the latent cache and, with
``continue_last_backup``, restores the newest backup; ``train()`` runs the loop, ``end()`` frees
memory. Once per step the loop polls the commands (stop, sample, backup, save), trains one
batch, reports progress, then runs what the sample, backup and save schedules say is due.
"""
from __future__ import annotations

import contextlib
import gc
import math
import time
from pathlib import Path

import torch

from ...trainsettings import TrainSettings
from ..protocol import Event
from . import checkpoint, concepts, resume
from .cache import DiskCache
from .data import TrainingData
from .lr_schedule import make_lr_scheduler
from .model import add_lora, autocast_dtype, load_model, pick_device, share_the_cpu
from .sampling import Sampler, spec_request
from .schedule import Schedule
from .tensorboard import LossBoard

NAN_HINT = ("lower the learning_rate, or train in FLOAT_32 (train_dtype) if mixed precision "
            "overflows")
OOM_HINT = ("CUDA ran out of memory: lower batch_size or the resolution, or turn on "
            "gradient_checkpointing")


class BuiltinBackend:
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.run_dir, self.base_dir = Path(run_dir), Path(base_dir)
        self.settings = TrainSettings.from_config(config, base_dir)
        self.device, self._device_note = pick_device(self.settings.train_device)
        share_the_cpu(self.device)
        self.amp_dtype = autocast_dtype(self.device, self.settings.train_dtype)
        self.output_path = checkpoint.resolve_output(self.settings.output_model_destination,
                                                     self.run_dir)
        self.parts = self.data = self.optimizer = self.sampler = self.lr_scheduler = None
        self.board = None
        self.global_step = self.epoch = self.epoch_step = self.samples_seen = 0
        self.epoch_lengths: list[int] = []
        self.scaler = None
        self._in_loop = False

    # -- start: model, LoRA, data, cache, resume --
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
        data = self._prepare_data()
        if data is None:
            return
        self.epoch_lengths = [len(data.epoch_batches(e)) for e in range(settings.epochs)]
        self.optimizer = torch.optim.AdamW(params, lr=settings.learning_rate)
        self.lr_scheduler = make_lr_scheduler(self.optimizer, settings.learning_rate_scheduler,
                                              settings.learning_rate_warmup_steps, self.max_step)
        self.noise_rng = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype is torch.float16 else None
        if settings.continue_last_backup:
            self._restore()
        self.data = data
        self.sampler = Sampler(self.parts, self.device, self.run_dir, self.callbacks,
                               settings.resolutions[0])
        self.callbacks.log(f"{len(data.items)} images, {len(data.samples)} samples in "
                           f"{len({s.bucket for s in data.samples})} bucket(s), "
                           f"{self.steps_per_epoch} steps per epoch, {self.max_step} steps on "
                           f"{self.device}; {sum(p.numel() for p in params)} LoRA parameters")

    def _prepare_data(self) -> TrainingData | None:
        settings = self.settings
        items = concepts.find_items(settings.concepts, min(settings.resolutions),
                                    self.callbacks.log, self._stop_requested)
        if items is None:
            return None
        if not items:
            raise ValueError(f"no usable images in {', '.join(c.path for c in settings.concepts)}")
        cache = None
        if settings.latent_caching:
            cache = DiskCache(Path(settings.cache_dir), Path(settings.base_model_name))
            if settings.clear_cache_before_training:
                cache.clear()
        data = TrainingData(settings, items, self.parts, self.device, cache)
        if cache is not None:
            if not data.fill_cache(self.callbacks.status, self._stop_requested):
                return None
            self.callbacks.log(f"cache: {cache.computed} computed, {cache.reused} reused "
                               f"({settings.cache_dir})")
        return data

    def _restore(self) -> None:
        backup = resume.newest_backup(self.run_dir)
        if backup is None:
            self.callbacks.log("continue_last_backup is set but this run has no backup yet: "
                               "starting from the beginning", "warning")
            return
        resume.check_matches(backup, self.config)
        checkpoint.load_lora(self.parts.unet, backup / checkpoint.LORA_FILE)
        resume.load_training_state(backup, self.optimizer, self.lr_scheduler, self.scaler,
                                   self.noise_rng)
        progress = resume.read_progress(backup)
        self.epoch, self.epoch_step = int(progress["epoch"]), int(progress["epoch_step"])
        self.global_step = int(progress["global_step"])
        self.samples_seen = int(progress.get("samples_seen", 0))
        self.callbacks.log(f"resuming from backup {backup.name} at step {self.global_step} "
                           f"(epoch {self.epoch + 1}, step {self.epoch_step} of it)")
        self.callbacks.status(f"resuming at step {self.global_step}")

    def _stop_requested(self) -> bool:
        self.commands.poll()
        return self.commands.stop_requested

    @property
    def steps_per_epoch(self) -> int:
        return self.epoch_lengths[0] if self.epoch_lengths else 1

    @property
    def max_step(self) -> int:
        return sum(self.epoch_lengths)

    # -- train: the loop, then the final backup and save --
    def train(self) -> None:
        if self.data is None or self.optimizer is None:  # stopped while starting
            self.callbacks.status("done")
            self.callbacks.finished(stopped=True, output=None)
            return
        self.board = LossBoard(self.run_dir, self.settings.tensorboard, self.callbacks.log)
        self.callbacks.status("training")
        self._in_loop = True
        try:
            if self.settings.sample_before_training and self.global_step == 0:
                self._sample_default()
            stopped = self._loop()
        finally:
            self._in_loop = False
            self.board.close()
        if self.settings.backup_before_save:
            self._backup()
        self.callbacks.status("saving")
        output = checkpoint.save_lora(self.parts.unet, self.output_path)
        self.callbacks.status("done")
        self.callbacks.finished(stopped=stopped, output=str(output))

    def _schedules(self) -> tuple[Schedule, Schedule, Schedule]:
        settings, now, per_epoch = self.settings, time.monotonic(), self.steps_per_epoch
        return (Schedule(settings.sample_after, settings.sample_after_unit, per_epoch,
                         settings.sample_skip_first, now),
                Schedule(settings.backup_after, settings.backup_after_unit, per_epoch, 0, now),
                Schedule(settings.save_every, settings.save_every_unit, per_epoch,
                         settings.save_skip_first, now))

    def _loop(self) -> bool:
        """True when a stop command ended it early."""
        schedules = self._schedules()
        first_epoch, skip = self.epoch, self.epoch_step
        for self.epoch in range(first_epoch, self.settings.epochs):
            batches = self.data.epoch_batches(self.epoch)
            self.epoch_step = skip if self.epoch == first_epoch else 0
            for indices in batches[self.epoch_step:]:
                if self._stop_requested():
                    return True
                self._run_commands()
                loss = self._train_step(indices)
                self.global_step += 1
                self.epoch_step += 1
                self.samples_seen += len(indices)
                self._report(loss, len(batches))
                self._run_schedules(*schedules)
        self.commands.poll()
        self._run_commands()  # requests that came in during the last step
        return False

    def _train_step(self, indices: list[int]) -> float:
        try:
            loss = self._forward_backward(indices)
        except torch.cuda.OutOfMemoryError as exc:
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            raise RuntimeError(f"{OOM_HINT} (at step {self.global_step + 1})") from exc
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {self.global_step + 1} "
                                     f"(epoch {self.epoch + 1}): {NAN_HINT}")
        return loss

    def _forward_backward(self, indices: list[int]) -> float:
        unet, scheduler = self.parts.unet, self.parts.scheduler
        latents, conditions, weights = self.data.batch(indices, self.epoch)
        noise = torch.randn(latents.shape, generator=self.noise_rng, device=self.device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(indices),),
                                  generator=self.noise_rng, device=self.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        with self._autocast():
            prediction = unet(noisy, timesteps, conditions).sample
        per_sample = (prediction.float() - noise).pow(2).flatten(1).mean(1)
        loss = (per_sample * weights).mean()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        return loss.item()  # the one sync per step

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _report(self, loss: float, epoch_length: int) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        self.callbacks.progress(
            global_step=self.global_step, max_step=self.max_step, epoch=self.epoch,
            max_epoch=self.settings.epochs, epoch_step=self.epoch_step,
            epoch_length=epoch_length, loss=loss, lr=lr)
        self.board.step(self.global_step, loss, lr, self.epoch)

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

    def _run_schedules(self, sample_schedule: Schedule, backup_schedule: Schedule,
                       save_schedule: Schedule) -> None:
        now = time.monotonic()
        if sample_schedule.due(self.global_step, now):
            self._sample_default()
        if backup_schedule.due(self.global_step, now):
            self._backup()
        if save_schedule.due(self.global_step, now):
            self._save_intermediate()

    def _sample_default(self) -> None:
        requests = [spec_request(spec) for spec in self.settings.samples]
        if not requests:
            self.callbacks.log("no samples are defined in the config", "warning")
            return
        self._sample(Event.SAMPLE_DEFAULT, requests)

    def _sample(self, kind: Event, requests: list[dict]) -> None:
        self.callbacks.status("sampling")
        made = self.sampler.sample_all(kind, requests, self.global_step, self.epoch)
        if self.board is not None and self.settings.samples_to_tensorboard:
            for index, (request, path) in enumerate(made):
                tag = f"samples/{kind.value.removeprefix('sample_')}/{index} - {request['prompt'][:60]}"
                self.board.image(tag, path, self.global_step)
        self._resume_status()

    def _backup(self) -> None:
        self.callbacks.status("creating backup")
        progress = {"epoch": self.epoch, "epoch_step": self.epoch_step,
                    "global_step": self.global_step, "samples_seen": self.samples_seen,
                    "max_step": self.max_step, "max_epoch": self.settings.epochs}
        state = resume.training_state(self.optimizer, self.lr_scheduler, self.scaler, self.noise_rng)
        folder = checkpoint.write_backup(self.run_dir, self.parts.unet, state, progress, self.config)
        self.callbacks.log(f"backup written: {folder.relative_to(self.run_dir).as_posix()}")
        if self.settings.rolling_backup:
            for old in checkpoint.prune_backups(self.run_dir, self.settings.rolling_backup_count):
                self.callbacks.log(f"rolling backup: removed {old.name}")
        self._resume_status()

    def _save_intermediate(self) -> None:
        self.callbacks.status("saving")
        name = (f"{self.settings.save_filename_prefix}{checkpoint.timestamp()}"
                f"-step{self.global_step}{self.output_path.suffix}")
        path = checkpoint.save_lora(self.parts.unet, self.run_dir / "saves" / name)
        self.callbacks.log(f"saved: {path.relative_to(self.run_dir).as_posix()}")
        self._resume_status()

    def _resume_status(self) -> None:
        if self._in_loop:
            self.callbacks.status("training")

    # -- end --
    def end(self) -> None:
        if self.board is not None:
            self.board.close()
        self.parts = self.data = self.optimizer = self.sampler = self.lr_scheduler = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
