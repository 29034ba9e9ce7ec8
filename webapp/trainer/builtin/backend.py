"""The built-in trainer: SD 1.x, 2.x and SDXL; LoRA, fine-tune or embedding; OneTrainer's life cycle.

``start()`` loads the model, sets up what trains (methods.py), finds the concepts' images, fills
the latent cache and, with ``continue_last_backup``, restores the newest backup; ``train()`` runs
the loop, ``end()`` frees memory. At each step boundary rank 0 decides (decisions.py) what the
sample, backup and save schedules say is due and what the commands ask (stop, sample, backup,
save), every rank acts on that, then trains one batch (stepper.py) and rank 0 reports progress.
With ``multi_gpu`` this runs once per rank (distributed.py): each trains its slice of every
global batch; rank 0 alone writes samples, backups, outputs and events.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path

import torch

from webapp.config import paths
from webapp.config.builtin.train_settings import TrainSettings
from webapp.config.names import value_label
from webapp.protocol import Event
from webapp.trainer.builtin import checkpoint, concepts, decisions, methods, outputs
from webapp.trainer.builtin.backups import Backups
from webapp.trainer.builtin.cache import DiskCache
from webapp.trainer.builtin.data import TrainingData
from webapp.trainer.builtin.distributed import Group, Solo, rank_device
from webapp.trainer.builtin.ema import EMA
from webapp.trainer.builtin.families import load_model
from webapp.trainer.builtin.lr_schedule import make_lr_scheduler
from webapp.trainer.builtin.device import autocast_dtype, cast_frozen_parts, pick_device, torch_dtype
from webapp.trainer.builtin.optimizers import make_optimizer
from webapp.trainer.builtin.sampling import Sampler, spec_request
from webapp.trainer.builtin.schedule import Schedule
from webapp.trainer.builtin.stepper import Stepper
from webapp.trainer.builtin.tensorboard import LossBoard
from webapp.trainer.threads import apply_trainer_threads
from webapp.settings import CONFIG_DIR_ENV, env_text

NAN_HINT = ("lower the learning_rate, or train in FLOAT_32 (train_dtype) if mixed precision "
            "overflows")
OOM_HINT = ("CUDA ran out of memory: lower batch_size or the resolution, or turn on "
            "gradient_checkpointing")


@contextlib.contextmanager
def _nothing():
    yield


class BuiltinBackend(Backups):
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path,
                 rendezvous=None):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.run_dir, self.base_dir = Path(run_dir), Path(base_dir)
        self.settings = TrainSettings.from_config(config, base_dir)
        self.group = Solo()
        # as make_backend set them (a test or benchmark that builds this backend directly gets the same)
        apply_trainer_threads(rendezvous.world_size if rendezvous is not None else 1)
        if rendezvous is not None and rendezvous.world_size > 1:
            self._join_group(rendezvous)
        else:
            self.device, self._device_note = pick_device(self.settings.train_device)
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

    def _join_group(self, rendezvous) -> None:
        self.device = torch.device(rank_device(self.settings.train_device, self.settings.multi_gpu,
                                               rendezvous.rank))
        self._device_note = ""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.group = Group(rendezvous, self.device)

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
        if self.group.agree(self._stop_requested()):
            return
        self.callbacks.status("preparing data")
        items = self._find_items()
        if self.group.agree(items is None):
            return
        data = self._training_data(items)
        self.epoch_lengths = [len(data.epoch_batches(e)) for e in range(settings.epochs)]
        # buckets and balancing as a 1-rank run at the global batch: each rank trains a slice
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
            f"{value_label(settings.training_method)} of {value_label(settings.model_type)} "
            f"({self.parts.source.get('kind')}): "
            f"{len(data.items)} images, {len(data.samples)} samples in "
            f"{len({s.bucket for s in data.samples})} bucket(s), {self.steps_per_epoch} steps per "
            f"epoch, {self.max_step} steps on {self.device}; {trained} trained parameters in "
            f"{', '.join(g.name for g in self.groups)}; optimizer {value_label(settings.options.optimizer)}")

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
        self.lr_scheduler = make_lr_scheduler(
            self.optimizer, settings.learning_rate_scheduler, settings.learning_rate_warmup_steps,
            self.optimizer_steps_total, settings.options.learning_rate_cycles,
            stop_after=[group.stop_after for group in self.groups])
        if options.ema != "OFF":
            self.ema = EMA([p for g in self.groups for p in g.params.values()], options.ema_decay,
                           options.ema_update_step_interval, on_cpu=options.ema == "CPU")
        self.noise_rng = torch.Generator(device=self.device).manual_seed(settings.seed + 1)
        params = [p for g in self.groups for p in g.params.values()]
        self.group.same_values(params)  # every rank starts from rank 0's trained weights
        self.stepper = Stepper(self.parts, settings, self.groups, self.optimizer, self.lr_scheduler,
                               self.device, self.amp_dtype, self.noise_rng, self.ema,
                               reducer=self.group.reducer(params, settings.multi_gpu, settings.seed))

    @property
    def optimizer_steps_total(self) -> int:
        return math.ceil(self.max_step / self.settings.options.gradient_accumulation_steps)

    def _find_items(self):
        settings = self.settings
        should_stop = self._stop_requested if self.group.is_main else (lambda: False)
        skipped: list = []
        # the worker checked the paths; every folder and file is checked again as it is opened
        roots = paths.read_roots(self.base_dir, env_text(CONFIG_DIR_ENV) or None)
        items = concepts.find_items(settings.concepts, min(settings.resolutions),
                                    self.callbacks.log, should_stop, skipped, roots)
        if skipped:  # the count travels with the event, for the run page
            self.callbacks.log(f"skipped {len(skipped)} of {len(skipped) + len(items or [])} dataset files that "
                               "cannot be used (each named above)", "warning", skipped_files=len(skipped))
        if items is not None and not items:
            raise ValueError(f"nothing to train on: no usable image in {', '.join(c.path for c in settings.concepts)}"
                             " (every file was skipped: see the warnings in the log)")
        return items

    def _training_data(self, items) -> TrainingData:
        settings = self.settings
        cache = None
        if settings.latent_caching:
            cache = DiskCache(Path(settings.cache_dir), Path(settings.base_model_name))
            if settings.clear_cache_before_training and self.group.is_main:
                cache.clear()
        return TrainingData(settings, items, self.parts, self.device, cache,
                            batch_size=settings.batch_size * self.group.world_size)

    def _fill_cache(self, data: TrainingData) -> bool:
        """False when a stop came while caching."""
        cache = data.cache
        if cache is None:
            return True
        # caching once: rank 0 encodes and stores; the others then read its files
        filled = data.fill_cache(self.callbacks.status, self._stop_requested) if self.group.is_main else True
        if not self.group.agree(filled):
            return False
        if not self.group.is_main:
            data.fill_cache(lambda text: None, lambda: False)
        self.callbacks.log(f"cache: {cache.summary()} ({self.settings.cache_dir})")
        return True

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
        self.board = LossBoard(self.run_dir, self.settings.tensorboard and self.group.is_main,
                               self.callbacks.log)
        self.callbacks.status("training")
        self._in_loop = True
        try:
            if self.settings.sample_before_training and self.global_step == 0 and self.group.is_main:
                self._sample_default()
            stopped = self._loop()
        finally:
            self._in_loop = False
            self.board.close()
        if self.group.world_size > 1:
            steps = max(1, self.group.reduces)
            self.callbacks.log(f"gradient averaging over {self.group.world_size} ranks: "
                               f"{1000 * self.group.reduce_seconds / steps:.3f} ms per optimizer step")
        if self.settings.backup_before_save:
            self._backup()
        output = None
        if self.group.is_main:  # one output for the group: the ranks' weights are the same
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
        first_epoch, skip, stepped = self.epoch, self.epoch_step, False
        for self.epoch in range(first_epoch, self.settings.epochs):
            batches = self.data.epoch_batches(self.epoch)
            self.epoch_step = skip if self.epoch == first_epoch else 0
            for indices in batches[self.epoch_step:]:
                if self._boundary(schedules, stepped):
                    return True
                last = self.global_step + 1 == self.max_step
                loss = self._train_step(indices, last)
                self.global_step += 1
                self.epoch_step += 1
                self.samples_seen += len(indices)
                stepped = True
                self._report(loss, len(batches))
        self._boundary(schedules, stepped, stopping_ends=False)  # what the last step made due
        return False

    def _boundary(self, schedules, stepped: bool, stopping_ends: bool = True) -> bool:
        """Rank 0 decides, every rank acts alike: the schedules due after the step just done,
        then a stop (True: the loop ends here), then the commands that came in."""
        proposal = (decisions.decide(self.commands, schedules, self.global_step, stepped)
                    if self.group.is_main else decisions.nothing())
        decided = self.group.agree(proposal)
        due = decided["due"]
        if due["sample"]:
            self._sample_default()
        if due["backup"]:
            self._backup()
        if due["save"]:
            self._save_intermediate()
        if decided["stop"] and stopping_ends:
            return True
        if decided["sample_default"]:
            self._sample_default()
        if decided["custom"]:
            self._sample(Event.SAMPLE_CUSTOM, decided["custom"])
        if decided["backup"]:
            self._backup()
        if decided["save"]:
            self._save_intermediate()
        return False

    def _train_step(self, indices: list[int], last: bool) -> float:
        mine, first_row, rows = self.group.shard(indices)
        # each rank's mean weighs by its share, so the ranks' average is the global batch's mean
        share = len(mine) * self.group.world_size / rows
        try:
            loss = self.stepper.step(self.data.batch(mine, self.epoch), last,
                                     rows=(first_row, rows), share=share)
            loss = self.group.average(loss)
        except torch.cuda.OutOfMemoryError as exc:
            self.stepper.discard_pending()
            torch.cuda.empty_cache()
            raise RuntimeError(f"{OOM_HINT} (at step {self.global_step + 1})") from exc
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} at step {self.global_step + 1} "
                                     f"(epoch {self.epoch + 1}): {NAN_HINT}")
        return loss

    def _report(self, loss: float, epoch_length: int) -> None:
        if not self.group.is_main:
            return
        lr = self.stepper.learning_rate()
        self.callbacks.progress(
            global_step=self.global_step, max_step=self.max_step, epoch=self.epoch,
            max_epoch=self.settings.epochs, epoch_step=self.epoch_step,
            epoch_length=epoch_length, loss=loss, lr=lr)
        self.board.step(self.global_step, loss, lr, self.epoch)

    # -- what a boundary may do (rank 0 writes; the others take part in the collectives) --
    def _sample_default(self) -> None:
        if not self.group.is_main:
            return
        requests = [spec_request(spec) for spec in self.settings.samples]
        if not requests:
            self.callbacks.log("no samples are defined in the config", "warning")
            return
        self._sample(Event.SAMPLE_DEFAULT, requests)

    def _sample(self, kind: Event, requests: list[dict]) -> None:
        if not self.group.is_main:
            return
        self.callbacks.status("sampling")
        made = self.sampler.sample_all(kind, requests, self.global_step, self.epoch)
        if self.board is not None and self.settings.samples_to_tensorboard:
            for index, (request, path) in enumerate(made):
                tag = f"samples/{kind.value.removeprefix('sample_')}/{index} - {request['prompt'][:60]}"
                self.board.image(tag, path, self.global_step)
        self._resume_status()

    def _save_intermediate(self) -> None:
        if not self.group.is_main:
            return
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
        self.group.close()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
