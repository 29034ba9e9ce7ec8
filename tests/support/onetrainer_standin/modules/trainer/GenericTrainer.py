"""A trainer that trains nothing, with the life cycle the OneTrainer backend relies on:
start() loads, train() runs epochs of batches (commands polled before each batch, progress after
it with the epoch's length as max_step, once more after each epoch), end() makes the final backup
and save, also after a stop."""
import importlib
import json
import os
import time

from PIL import Image

from modules.modelSampler.BaseModelSampler import ModelSamplerOutput
from modules.util.config.SampleConfig import SampleConfig
from modules.util.enum.FileType import FileType
from modules.util.TrainProgress import TrainProgress


class GenericTrainer:
    def __init__(self, config, callbacks, commands):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.progress = TrainProgress()

    def start(self):
        self.callbacks.on_update_status("loading the model")
        if self.config.standin_missing_module:
            importlib.import_module(self.config.standin_missing_module)
        os.makedirs(self.config.workspace_dir, exist_ok=True)
        print(f"stand-in: model {self.config.base_model_name!r} loaded", flush=True)

    def train(self):
        config, progress = self.config, self.progress
        steps = int(config.standin_steps_per_epoch)
        self.callbacks.on_update_status("training")
        for _ in range(progress.epoch, config.epochs):
            for _ in range(steps):
                self._take_commands()
                if self.commands.get_stop_command():
                    return
                time.sleep(config.standin_step_seconds)
                if config.standin_fail_at_step == progress.global_step + 1:
                    print("stand-in: something broke in the training step", flush=True)
                    raise RuntimeError(f"stand-in failure at step {progress.global_step + 1}")
                progress.next_step(config.batch_size)
                self.callbacks.on_update_train_progress(progress, steps, config.epochs)
                if config.sample_after_unit == "STEP" and config.sample_after and \
                        progress.global_step % config.sample_after == 0:
                    self._sample(self._default_samples(), self.callbacks.on_sample_default,
                                 self.callbacks.on_update_sample_default_progress)
                if self.commands.get_stop_command():
                    return
            progress.next_epoch()
            self.callbacks.on_update_train_progress(progress, steps, config.epochs)
            if self.commands.get_stop_command():
                return

    def end(self):
        if self.config.backup_before_save:
            self._write("backup", "backup")
        self.callbacks.on_update_status("saving the final model")
        destination = self.config.output_model_destination
        os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
        with open(destination, "w") as file:
            json.dump({"stand-in model": True, "global_step": self.progress.global_step}, file)

    def _take_commands(self):
        if self.commands.get_and_reset_sample_default_command():
            self._sample(self._default_samples(), self.callbacks.on_sample_default,
                         self.callbacks.on_update_sample_default_progress)
        custom = self.commands.get_and_reset_sample_custom_commands()
        if custom:
            self._sample(custom, self.callbacks.on_sample_custom, self.callbacks.on_update_sample_custom_progress)
        if self.commands.get_and_reset_backup_command():
            self._write("backup", "backup")
        if self.commands.get_and_reset_save_command():
            self._write("save", "save")

    def _default_samples(self):
        samples = self.config.samples
        if samples is None:
            with open(self.config.sample_definition_file_name) as file:
                samples = [SampleConfig.default_values().from_dict(item) for item in json.load(file)]
        return [sample for sample in samples if sample.enabled]

    def _sample(self, samples, on_sample, on_progress):
        self.callbacks.on_update_status("sampling")
        for index, sample in enumerate(samples):
            steps = min(int(sample.diffusion_steps), 3)
            for step in range(steps):
                on_progress(step + 1, steps)
            image = Image.new("RGB", (int(sample.width), int(sample.height)), (40 * index % 256, 120, 200))
            folder = os.path.join(self.config.workspace_dir, "samples", f"{index}-{sample.prompt[:20]}")
            os.makedirs(folder, exist_ok=True)
            image.save(os.path.join(folder, f"{self.progress.global_step}.png"))
            on_sample(ModelSamplerOutput(FileType.IMAGE, image))
        self.callbacks.on_update_status("training")

    def _write(self, kind: str, status: str):
        self.callbacks.on_update_status(f"creating {status}")
        # a name of its own each time, as OneTrainer's (timestamped) are: two in one step are two
        self.written = getattr(self, "written", 0) + 1
        folder = os.path.join(self.config.workspace_dir, kind, f"{self.written}-step-{self.progress.global_step}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "state.json"), "w") as file:
            json.dump({"global_step": self.progress.global_step, "epoch": self.progress.epoch}, file)
        self.callbacks.on_update_status("training")
