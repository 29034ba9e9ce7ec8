"""The OneTrainer backend: hosts an installed OneTrainer checkout in the trainer process.

OneTrainer is used only by importing it from the user's checkout (``ONETRAINER_DIR``), after
moving the working directory and the import path there as its own scripts expect. Its TrainConfig
is built from our stored JSON by its own ``default_values().from_dict()`` (which migrates old
versions), and its trainer comes from its factory, ``modules.util.create.create_trainer``, run as
start / train / end. Its callbacks become our events; our commands reach its TrainCommands
through a small thread, because OneTrainer polls its commands object once per batch.

Nothing here imports OneTrainer (or torch) at module level: the web may import this module.
"""
from __future__ import annotations

import collections
import os
import re
import sys
import threading
from pathlib import Path

from webapp.config import paths
from webapp.protocol import Event
from webapp.trainer import onetrainer_hooks
from webapp.trainer.sample_files import save_sample_image
from webapp.settings import CONFIG_DIR_ENV, env_text

FORWARD_EVERY_S = 0.2
WORKSPACE_FOLDER = "onetrainer"  # OneTrainer's workspace_dir, inside the run folder
# path fields: relative ones are the user's, meant from our workspace, not from OneTrainer's checkout
WORKSPACE_PATHS = ("cache_dir", "concept_file_name", "sample_definition_file_name", "huggingface_cache_dir")
MODEL_PATHS = ("base_model_name", "lora_model_name")  # may be Hugging Face ids: resolved only if they exist


# -- the checkout --------------------------------------------------------------------------------
def enter_checkout(directory: Path) -> None:
    directory = Path(directory).resolve()
    os.chdir(directory)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))


def import_onetrainer() -> dict:
    """OneTrainer's classes this backend uses, by their module paths in its checkout."""
    from modules.util import create
    from modules.util.callbacks.TrainCallbacks import TrainCallbacks
    from modules.util.commands.TrainCommands import TrainCommands
    from modules.util.config.SampleConfig import SampleConfig
    from modules.util.config.TrainConfig import TrainConfig
    return {"create": create, "TrainCallbacks": TrainCallbacks, "TrainCommands": TrainCommands,
            "SampleConfig": SampleConfig, "TrainConfig": TrainConfig}


def read_commit(directory: Path) -> str | None:
    """The checkout's commit, read from its .git folder (no git binary needed)."""
    git = Path(directory) / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            git = (Path(directory) / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


PINS = re.compile(r"^(torch==[^\s#]+|-e git\+\S+/(diffusers|mgds)\.git@\w+)", re.M)


def requirement_pins(directory: Path) -> list[str]:
    """The pins in its requirements files that date a checkout: torch, and the commits of
    diffusers and mgds it installs from git."""
    found = []
    for name in ("requirements-default.txt", "requirements-global.txt"):
        try:
            text = (Path(directory) / name).read_text(encoding="utf-8")
        except OSError:
            continue
        for match in PINS.finditer(text):
            pin = match.group(1)
            found.append(pin.rsplit("/", 1)[-1].replace(".git@", "@") if pin.startswith("-e") else pin)
    return found


def describe_version(directory: Path) -> str:
    """The checkout's version from what it has: its commit, else (a copy without .git) its pins."""
    commit = read_commit(directory)
    if commit:
        return f"commit {commit}"
    pins = requirement_pins(directory)
    return "commit unknown (no .git)" + (f"; it pins {', '.join(pins)}" if pins else "")


def check_installation(directory: Path) -> dict:
    """Whether OneTrainer imports from ``directory``, and its version. Restores the working dir."""
    path = Path(directory).expanduser()
    info = {"dir": str(path), "commit": read_commit(path), "version": describe_version(path),
            "ok": False, "error": None}
    if not (path / "modules").is_dir():
        info["error"] = "not a OneTrainer checkout (it has no modules/ folder)"
        return info
    cwd = os.getcwd()
    try:
        enter_checkout(path)
        import_onetrainer()
        info["ok"] = True
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        info["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        os.chdir(cwd)
    return info


# -- our config → OneTrainer's -------------------------------------------------------------------
def onetrainer_config_dict(config: dict, run_dir: Path, base_dir: Path) -> dict:
    """Our stored config with its paths made absolute: OneTrainer runs from its own checkout.
    Its workspace (samples, backups, TensorBoard) goes into the run folder, so a resumed run finds
    its backups; a relative output lands in the run folder, as with the built-in trainer."""
    run_dir, base_dir = Path(run_dir), Path(base_dir)
    # the third check (web, worker, here): OneTrainer would write wherever the config says
    paths.require_confined(config, base_dir, paths.read_roots(base_dir, env_text(CONFIG_DIR_ENV) or None), run_dir)
    result = dict(config)

    def absolute(value, base: Path):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)

    result["workspace_dir"] = str(run_dir / WORKSPACE_FOLDER)
    result["output_model_destination"] = absolute(
        config.get("output_model_destination") or "models/model.safetensors", run_dir)
    result["debug_dir"] = absolute(config.get("debug_dir") or "debug", run_dir)
    for key in WORKSPACE_PATHS:
        if config.get(key):
            result[key] = absolute(config[key], base_dir)
    for key in MODEL_PATHS:
        value = config.get(key)
        if value and not Path(value).is_absolute() and (base_dir / value).exists():
            result[key] = str(base_dir / value)
    if isinstance(config.get("concepts"), list):
        result["concepts"] = [
            {**concept, "path": absolute(concept["path"], base_dir)} if concept.get("path") else concept
            for concept in config["concepts"] if isinstance(concept, dict)]
    return result


def default_sample_specs(config: dict, base_dir: Path) -> list[dict]:
    """The config's enabled samples, in OneTrainer's order: what its default samples show."""
    from webapp.config.loading import read_list_file
    samples = config.get("samples")
    if samples is None and config.get("sample_definition_file_name"):
        samples, _ = read_list_file(config["sample_definition_file_name"], base_dir)
    return [spec for spec in samples or [] if isinstance(spec, dict) and spec.get("enabled", True)]


def sample_config_values(sample: dict) -> dict:
    """Our custom sample form → OneTrainer's SampleConfig fields."""
    values = {"enabled": True, "prompt": sample.get("prompt", ""),
              "negative_prompt": sample.get("negative_prompt", "")}
    for ours, theirs in (("width", "width"), ("height", "height"), ("steps", "diffusion_steps"),
                         ("cfg_scale", "cfg_scale")):
        if sample.get(ours) is not None:
            values[theirs] = sample[ours]
    seed = sample.get("seed")
    if seed is not None:
        values.update(seed=max(int(seed), 0), random_seed=int(seed) < 0)
    return values


def progress_fields(epoch: int, epoch_step: int, global_step: int, epoch_length: int,
                    max_epoch: int) -> dict:
    """OneTrainer's per-epoch progress as our whole-run progress. Its ``max_step`` is the current
    epoch's length: the run's total is the steps done before this epoch plus this epoch's length
    for each epoch left (right when resuming too). After an epoch it reports once more with the
    next epoch's number and step 0: that is the end of the epoch before."""
    if epoch_step == 0 and epoch > 0:
        epoch, epoch_step = epoch - 1, epoch_length
    total = (global_step - epoch_step) + max(max_epoch - epoch, 1) * epoch_length
    return {"global_step": global_step, "max_step": max(total, global_step), "epoch": epoch,
            "max_epoch": max_epoch, "epoch_step": epoch_step, "epoch_length": epoch_length}


# -- commands: ours → OneTrainer's ---------------------------------------------------------------
class CommandForwarder:
    """Waits on our commands (up to FORWARD_EVERY_S at a time, so that close() is noticed) and
    calls the matching OneTrainer command as each arrives: OneTrainer checks its stop after every
    step, so a stop passed on at once saves up to a step of the time a stop takes."""

    def __init__(self, ours, theirs, make_sample_config, on_custom_sample, log):
        self.ours, self.theirs = ours, theirs
        self.make_sample_config, self.on_custom_sample, self.log = make_sample_config, on_custom_sample, log
        self.stop_sent = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="onetrainer-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Not joined: the thread may be waiting on the queue for up to FORWARD_EVERY_S, and the
        process's exit (the run's final state) must not wait for that. What it might still do
        (set a flag on OneTrainer's commands) is harmless once OneTrainer has ended."""
        self._done.set()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.ours.poll(wait_s=FORWARD_EVERY_S)
                if not self._done.is_set():
                    self.forward()
            except Exception as exc:  # noqa: BLE001 - one bad command must not end forwarding
                self.log(f"a command could not be passed to OneTrainer: {exc}", "error")

    def forward(self) -> None:
        self.ours.poll()
        if self.ours.stop_requested and not self.stop_sent:
            self.stop_sent = True
            self.theirs.stop()
        if self.ours.take_sample_default():
            self.theirs.sample_default()
        for sample in self.ours.take_custom_samples():
            self.on_custom_sample(sample)
            self.theirs.sample_custom(self.make_sample_config(sample))
        if self.ours.take_backup():
            self.theirs.backup()
        if self.ours.take_save():
            self.theirs.save()


# -- the backend ---------------------------------------------------------------------------------
class OneTrainerBackend:
    def __init__(self, config: dict, callbacks, commands, run_dir: Path, base_dir: Path,
                 onetrainer_dir: Path):
        self.config, self.callbacks, self.commands = config, callbacks, commands
        self.run_dir, self.base_dir = Path(run_dir), Path(base_dir)
        self.onetrainer_dir = Path(onetrainer_dir)
        self.ot_config_dict = onetrainer_config_dict(config, self.run_dir, self.base_dir)
        self.default_specs = default_sample_specs(config, self.base_dir)
        self.custom_pending: collections.deque = collections.deque()
        self.trainer = self.ot_commands = self.forwarder = self.scalars = None
        self.position = {"global_step": 0, "epoch": 0}
        self._last_step: int | None = None
        self._default_index = 0
        self._trained = False
        self._cwd = os.getcwd()

    def start(self) -> None:
        self.callbacks.status("loading OneTrainer")
        if not (self.onetrainer_dir / "modules").is_dir():
            raise RuntimeError(f"ONETRAINER_DIR={self.onetrainer_dir} is not a OneTrainer checkout "
                               "(it has no modules/ folder)")
        enter_checkout(self.onetrainer_dir)
        try:
            ot = import_onetrainer()
        except ImportError as exc:
            raise RuntimeError(f"OneTrainer in {self.onetrainer_dir} could not be imported: {exc}") from exc
        onetrainer_hooks.quiet_git(self.onetrainer_dir, describe_version(self.onetrainer_dir))
        sample_config = ot["SampleConfig"]
        train_config = ot["TrainConfig"].default_values()
        train_config.from_dict(self.ot_config_dict)
        onetrainer_hooks.preflight(train_config)  # fail now, not after the last step
        ot_callbacks = ot["TrainCallbacks"](
            on_update_train_progress=self._on_progress,
            on_update_status=self._on_status,
            on_sample_default=lambda output: self._on_sample(Event.SAMPLE_DEFAULT, output),
            on_update_sample_default_progress=self.callbacks.sample_progress,
            on_sample_custom=lambda output: self._on_sample(Event.SAMPLE_CUSTOM, output),
            on_update_sample_custom_progress=self.callbacks.sample_progress)
        self.ot_commands = ot["TrainCommands"]()
        self.forwarder = CommandForwarder(
            self.commands, self.ot_commands,
            lambda sample: sample_config.default_values().from_dict(sample_config_values(sample)),
            self.custom_pending.append, self.callbacks.log)
        self.forwarder.start()  # a stop while loading still reaches OneTrainer (which may ignore it)
        self.trainer = ot["create"].create_trainer(train_config, ot_callbacks, self.ot_commands)
        self.scalars = onetrainer_hooks.tap_scalars(self.trainer)
        self.trainer.start()

    def train(self) -> None:
        self.trainer.train()
        self._trained = True

    def end(self) -> None:
        """OneTrainer makes its final backup and save in its end(). After a failure it is not
        called: the model may be half-updated, and the run is reported failed anyway."""
        try:
            if self._trained:
                stopped = bool(self.ot_commands.get_stop_command())
                if stopped:
                    onetrainer_hooks.skip_full_collections()
                self.trainer.end()
                output = self.ot_config_dict["output_model_destination"]
                self.callbacks.status("done")
                # nothing is saved when it stopped before its first step: no output to register
                self.callbacks.finished(stopped=stopped, output=output if Path(output).exists() else None)
        finally:
            if self.forwarder is not None:
                self.forwarder.close()
            self.trainer = None
            os.chdir(self._cwd)

    # -- OneTrainer's callbacks (it swallows their exceptions: log them instead) --
    def _on_progress(self, train_progress, max_step: int, max_epoch: int, **extra) -> None:
        fields = progress_fields(train_progress.epoch, train_progress.epoch_step,
                                 train_progress.global_step, max_step, max_epoch)
        if fields["global_step"] == self._last_step:
            return  # the end-of-epoch repeat of the last step
        self._last_step = fields["global_step"]
        self.position = {"global_step": fields["global_step"], "epoch": fields["epoch"]}
        loss, lr = self.scalars.take() if self.scalars is not None else (None, None)
        self.callbacks.progress(**fields, loss=loss, lr=lr)

    def _on_status(self, text: str) -> None:
        if "sampl" in text.lower():
            self._default_index = 0  # a new round of default samples starts
        self.callbacks.status(text)

    def _on_sample(self, kind: Event, output) -> None:
        try:
            self._save_sample(kind, output)
        except Exception as exc:  # noqa: BLE001 - OneTrainer would swallow it silently
            self.callbacks.log(f"a OneTrainer sample could not be kept: {type(exc).__name__}: {exc}", "error")

    def _save_sample(self, kind: Event, output) -> None:
        image = getattr(output, "data", output)
        if kind is Event.SAMPLE_CUSTOM:
            spec = self.custom_pending.popleft() if self.custom_pending else {}
        else:
            specs = self.default_specs
            spec = specs[self._default_index % len(specs)] if specs else {}
            self._default_index += 1
        if not hasattr(image, "save") or not hasattr(image, "size"):
            kind_name = getattr(getattr(output, "file_type", None), "name", "non-image")
            self.callbacks.log(f"OneTrainer made a {kind_name.lower()} sample; it is in its workspace only")
            return
        path = self._write_image(image, kind)
        settings = sample_config_values(spec) if kind is Event.SAMPLE_CUSTOM else spec
        self.callbacks.sample(
            kind, path=path.relative_to(self.run_dir).as_posix(), prompt=settings.get("prompt", ""),
            negative_prompt=settings.get("negative_prompt", ""), seed=spec.get("seed"),
            steps=settings.get("diffusion_steps"), cfg_scale=settings.get("cfg_scale"),
            width=image.size[0], height=image.size[1], **self.position)

    def _write_image(self, image, kind: Event) -> Path:
        return save_sample_image(image, self.run_dir, kind, self.position["global_step"])
