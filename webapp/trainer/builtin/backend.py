"""The built-in trainer: SD 1.x, 2.x and SDXL; LoRA, fine-tune or embedding; OneTrainer's life cycle.

``start()`` loads the model, sets up what trains (methods.py), finds the concepts' images, fills
the latent cache and, with ``continue_last_backup``, restores the newest backup; ``train()`` runs
the loop, ``end()`` frees memory. Once per step the loop polls the commands (stop, sample,
backup, save), trains one batch (stepper.py), reports progress, then runs what the sample, backup
and save schedules say is due.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from webapp.config.builtin.settings import TrainSettings
from webapp.protocol import Event
from webapp.trainer.builtin import checkpoint, concepts, methods, outputs, resume
from webapp.trainer.builtin.cache import DiskCache
from webapp.trainer.builtin.data import TrainingData
from webapp.trainer.builtin.ema import EMA
from webapp.trainer.builtin.families import load_model
from webapp.trainer.builtin.lr_schedule import lr_factor
from webapp.trainer.builtin.model import autocast_dtype, cast_frozen_parts, pick_device, share_the_cpu, torch_dtype
from webapp.trainer.builtin.optimizers import make_optimizer
from webapp.trainer.builtin.sampling import Sampler, spec_request
from webapp.trainer.builtin.schedule import Schedule
from webapp.trainer.builtin.stepper import Stepper
from webapp.trainer.builtin.tensorboard import LossBoard

NAN_HINT = ("lower the learning_rate, or train in FLOAT_32 (train_dtype) if mixed precision "
            "overflows")
OOM_HINT = ("CUDA ran out of memory: lower batch_size or the resolution, or turn on "
            "gradient_checkpointing")


@contextlib.contextmanager
def _nothing():
    yield


class BuiltinBackend:
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.run_dir, self.base_dir = Path(run_dir), Path(base_dir)
        self.settings = TrainSettings.from_config(config, base_dir)
        self.device, self._device_note = pick_device(self.settings.train_device)
        share_the_cpu(self.device)
        self.amp_dtype = autocast_dtype(self.device, self.settings.train_dtype)
        self.output_format = self.settings.options.output_model_format
        self.output_path = checkpoint.resolve_output(self.settings.output_model_destination,
                                                     self.run_dir, self.output_format)
        self.parts = self.data = self.optimizer = self.sampler = self.lr_scheduler = None
        self.stepper = self.ema = self.embedding = self.board = None
        self.groups: list[methods.TrainedGroup] = []
        self.global_step = self.epoch = self.epoch_step = self.samples_seen = 0
        self.epoch_lengths: list[int] = []
        self._max_step = 0
        self._in_loop = False

    # -- start: model, what trains, data, cache, resume --
    def start(self) -> None:
        settings = self.settings
        if self._device_note:
            self.callbacks.log(self._device_note, "warning")
        if settings.train_dtype == "FLOAT_16" and self.amp_dtype is None:
            self.callbacks.log("train_dtype FLOAT_16 trains in float32 on the CPU", "info")
        self.callbacks.status("loading model")
        self.parts = load_model(settings.base_model_name, settings.model_type, self.device,
                                self.config.get("base_model_name", ""))
        if self._stop_requested():
            return
        self.callbacks.status("preparing data")
        items = self._find_items()
        if items is None:
            return
        data = self._training_data(items)
        self.epoch_lengths = [len(data.epoch_batches(e)) for e in range(settings.epochs)]
        self._max_step = sum(self.epoch_lengths)  # read twice a step: summed once
        self._set_up_training()
        if self.embedding is not None:
            data.expand_caption = self.embedding.expand
        if not self._fill_cache(data):
            return
        if settings.continue_last_backup:
            self._restore()
        self.data = data
        self.sampler = Sampler(self.parts, self.device, self.run_dir, self.callbacks,
                               settings.resolutions[0])
        trained = sum(p.numel() for group in self.groups for p in group.params.values())
        self.callbacks.log(
            f"{settings.training_method} of {settings.model_type} ({self.parts.source.get('kind')}): "
            f"{len(data.items)} images, {len(data.samples)} samples in "
            f"{len({s.bucket for s in data.samples})} bucket(s), {self.steps_per_epoch} steps per "
            f"epoch, {self.max_step} steps on {self.device}; {trained} trained parameters in "
            f"{', '.join(g.name for g in self.groups)}; optimizer {settings.options.optimizer}")

    def _set_up_training(self) -> None:
        settings, options = self.settings, self.settings.options
        if settings.training_method == "LORA":
            self.groups = methods.setup_lora(self.parts, settings, self.steps_per_epoch)
        elif settings.training_method == "FINE_TUNE":
            self.groups = methods.setup_fine_tune(self.parts, settings, self.steps_per_epoch)
        else:
            self.groups, self.embedding = methods.setup_embedding(self.parts, settings)
        trained_modules = {g.name for g in self.groups}
        for name, encoder in zip(("text_encoder", "text_encoder_2"), self.parts.text_encoders):
            if name in trained_modules:
                encoder.train()  # a LoRA's dropout acts in train mode only
        self.parts.unet.train()  # always: gradient checkpointing and LoRA dropout act in train mode only
        for note in cast_frozen_parts(self.parts, settings, trained_modules, self.amp_dtype):
            self.callbacks.log(note, "info")
        checkpointed = methods.enable_gradient_checkpointing(self.parts, settings, self.groups)
        if checkpointed:
            self.callbacks.log(f"gradient checkpointing: {', '.join(checkpointed)}", "info")
        self.optimizer = make_optimizer(options.optimizer, options.optimizer_settings, [
            {"params": list(g.params.values()), "lr": g.learning_rate, "name": g.name} for g in self.groups])
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, [self._lr_lambda(group) for group in self.groups])
        if options.ema != "OFF":
            self.ema = EMA([p for g in self.groups for p in g.params.values()], options.ema_decay,
                           options.ema_update_step_interval, on_cpu=options.ema == "CPU")
        self.noise_rng = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        self.stepper = Stepper(self.parts, settings, self.groups, self.optimizer, self.lr_scheduler,
                               self.device, self.amp_dtype, self.noise_rng, self.ema)

    def _lr_lambda(self, group):
        settings = self.settings
        total = self.optimizer_steps_total
        warmup, scheduler = settings.learning_rate_warmup_steps, settings.learning_rate_scheduler
        cycles = settings.options.learning_rate_cycles

        def factor(step: int) -> float:
            if group.stop_after is not None and step >= group.stop_after:
                return 0.0  # stop_training_after: this part no longer changes
            return lr_factor(step, scheduler, warmup, total, cycles)
        return factor

    @property
    def optimizer_steps_total(self) -> int:
        return math.ceil(self.max_step / self.settings.options.gradient_accumulation_steps)

    def _find_items(self):
        settings = self.settings
        items = concepts.find_items(settings.concepts, min(settings.resolutions),
                                    self.callbacks.log, self._stop_requested)
        if items is not None and not items:
            raise ValueError(f"no usable images in {', '.join(c.path for c in settings.concepts)}")
        return items

    def _training_data(self, items) -> TrainingData:
        settings = self.settings
        cache = None
        if settings.latent_caching:
            cache = DiskCache(Path(settings.cache_dir), Path(settings.base_model_name))
            if settings.clear_cache_before_training:
                cache.clear()
        return TrainingData(settings, items, self.parts, self.device, cache)

    def _fill_cache(self, data: TrainingData) -> bool:
        """False when a stop came while caching."""
        cache = data.cache
        if cache is None:
            return True
        if not data.fill_cache(self.callbacks.status, self._stop_requested):
            return False
        self.callbacks.log(f"cache: {cache.computed} computed, {cache.reused} reused "
                           f"({self.settings.cache_dir})")
        return True

    def _restore(self) -> None:
        backup = resume.newest_backup(self.run_dir)
        if backup is None:
            self.callbacks.log("continue_last_backup is set but this run has no backup yet: "
                               "starting from the beginning", "warning")
            return
        resume.check_matches(backup, self.config)
        checkpoint.load_trained(self.groups, backup / checkpoint.TRAINED_FILE)
        resume.load_training_state(backup, self.optimizer, self.lr_scheduler, self.stepper.scaler,
                                   self.noise_rng, self.ema)
        self._restore_accumulation(resume.read_training_state(backup).get("accumulated"))
        progress = resume.read_progress(backup)
        self.epoch, self.epoch_step = int(progress["epoch"]), int(progress["epoch_step"])
        self.global_step = int(progress["global_step"])
        self.samples_seen = int(progress.get("samples_seen", 0))
        self.callbacks.log(f"resuming from backup {backup.name} at step {self.global_step} "
                           f"(epoch {self.epoch + 1}, step {self.epoch_step} of it)")
        self.callbacks.status(f"resuming at step {self.global_step}")

    def _restore_accumulation(self, accumulated: dict | None) -> None:
        """Gradients of batches that waited for the optimizer when the backup was made."""
        if not accumulated or not accumulated.get("pending"):
            return
        for param, grad in zip(self.stepper.params, accumulated["grads"]):
            param.grad = None if grad is None else grad.to(param.device, param.dtype)
        self.stepper.pending = int(accumulated["pending"])

    def _stop_requested(self) -> bool:
        self.commands.poll()
        return self.commands.stop_requested

    @property
    def steps_per_epoch(self) -> int:
        return self.epoch_lengths[0] if self.epoch_lengths else 1

    @property
    def max_step(self) -> int:
        return self._max_step

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
        output = self._write_output(self.output_path)
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
                last = self.global_step + 1 == self.max_step
                loss = self._train_step(indices, last)
                self.global_step += 1
                self.epoch_step += 1
                self.samples_seen += len(indices)
                self._report(loss, len(batches))
                self._run_schedules(*schedules)
        self.commands.poll()
        self._run_commands()  # requests that came in during the last step
        return False

    def _train_step(self, indices: list[int], last: bool) -> float:
        try:
            loss = self.stepper.step(self.data.batch(indices, self.epoch), last)
        except torch.cuda.OutOfMemoryError as exc:
            self.stepper.discard_pending()
            torch.cuda.empty_cache()
            raise RuntimeError(f"{OOM_HINT} (at step {self.global_step + 1})") from exc
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {self.global_step + 1} "
                                     f"(epoch {self.epoch + 1}): {NAN_HINT}")
        return loss

    def _report(self, loss: float, epoch_length: int) -> None:
        lr = self.stepper.learning_rate()
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
        state = resume.training_state(self.optimizer, self.lr_scheduler, self.stepper.scaler,
                                      self.noise_rng, self.ema)
        if self.stepper.pending:  # gradients waiting for the optimizer: a resume needs them
            state["accumulated"] = {"pending": self.stepper.pending,
                                    "grads": [None if p.grad is None else p.grad.detach().cpu()
                                              for p in self.stepper.params]}
        folder = checkpoint.write_backup(self.run_dir, self.groups, state, progress, self.config)
        self.callbacks.log(f"backup written: {folder.relative_to(self.run_dir).as_posix()}",
                           artifact=self._artifact("backup", folder))
        if self.settings.rolling_backup:
            for old in checkpoint.prune_backups(self.run_dir, self.settings.rolling_backup_count):
                self.callbacks.log(f"rolling backup: removed {old.name}")
        self._resume_status()

    def _save_intermediate(self) -> None:
        self.callbacks.status("saving")
        name = (f"{self.settings.save_filename_prefix}{checkpoint.timestamp()}"
                f"-step{self.global_step}{self.output_path.suffix}")
        path = self._write_output(self.run_dir / "saves" / name)
        self.callbacks.log(f"saved: {path.relative_to(self.run_dir).as_posix()}", artifact=self._artifact("save", path))
        self._resume_status()

    def _artifact(self, kind: str, path: Path) -> dict:
        return {"kind": kind, "path": path.relative_to(self.run_dir).as_posix(),
                "global_step": self.global_step, "epoch": self.epoch}

    def _write_output(self, destination: Path) -> Path:
        """The trained model in the config's output format (EMA weights when EMA is on)."""
        settings = self.settings
        metadata = outputs.output_metadata(self.config, self.global_step)
        dtype = torch_dtype(settings.options.output_dtype)
        with self.ema.applied() if self.ema is not None else _nothing():
            if settings.training_method == "LORA":
                return outputs.save_lora(self.parts, destination, self.output_format, dtype, metadata)
            if settings.training_method == "FINE_TUNE":
                return outputs.save_fine_tune(self.parts, destination, self.output_format, dtype, metadata)
            return outputs.save_embedding(self.parts, self.embedding.vectors, destination, dtype, metadata)

    def _resume_status(self) -> None:
        if self._in_loop:
            self.callbacks.status("training")

    # -- end --
    def end(self) -> None:
        if self.board is not None:
            self.board.close()
        self.parts = self.data = self.optimizer = self.sampler = self.lr_scheduler = None
        self.stepper = self.ema = self.embedding = None
        # no gc.collect(): the trainer process exits next, and a collection over a model's
        # objects held the GIL ~0.35 s while the "finished" event waited in the queue's feeder
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
