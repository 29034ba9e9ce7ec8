"""The built-in trainer, for real, on the tiny demo model (random weights, CPU, a few seconds a run)."""
from __future__ import annotations

import json
import math
import statistics

import pytest
from PIL import Image

from webapp.trainer.builtin.schedule import Schedule
from webapp.trainer.callbacks import TrainCallbacks
from webapp.trainer.commands import TrainCommands
from webapp.protocol import Event


@pytest.fixture(scope="session")
def base_config(demo_config):
    return demo_config  # conftest's: the demo config as `otweb demo` writes it


class Recorder(TrainCallbacks):
    """Keeps every event; ``at_step`` maps a global step to commands sent right after it."""

    def __init__(self, commands: TrainCommands, at_step: dict | None = None):
        self.events, self.commands, self.at_step = [], commands, at_step or {}

    def emit(self, event, **data):
        self.events.append((Event(event), data))
        if event is Event.PROGRESS:
            for message in self.at_step.get(data["global_step"], []):
                self.commands.apply(message)

    def of(self, event: Event) -> list[dict]:
        return [data for name, data in self.events if name is event]


def run(demo_workspace, base_config, run_dir, at_step=None, before=(), **overrides):
    """Start, train and end a backend on the demo config with ``overrides`` (2 epochs of 6
    steps, no scheduled sampling, by default); returns the recorder."""
    from webapp.trainer.builtin import BuiltinBackend
    config = {**base_config, "epochs": 2, "sample_after_unit": "NEVER", **overrides}
    commands = TrainCommands()
    for message in before:
        commands.apply(message)
    recorder = Recorder(commands, at_step)
    backend = BuiltinBackend(config, recorder, commands, run_dir=run_dir, base_dir=demo_workspace[0])
    backend.start()
    backend.train()
    backend.end()
    return recorder


def command(name: str, **data) -> dict:
    return {"command": name, **data}


@pytest.fixture(scope="module")
def short_run(demo_workspace, base_config, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("short-run")
    samples = [{**s, "diffusion_steps": 2} for s in base_config["samples"]]
    recorder = run(demo_workspace, base_config, run_dir, lora_alpha=2.0, samples=samples,
                   sample_after=5, sample_after_unit="STEP", sample_skip_first=1)
    return recorder, run_dir


def test_short_run_reports_every_step_and_finishes(short_run):
    recorder, run_dir = short_run
    progress = recorder.of(Event.PROGRESS)
    assert [p["global_step"] for p in progress] == list(range(1, 13))
    assert {(p["max_step"], p["max_epoch"], p["epoch_length"]) for p in progress} == {(12, 2, 6)}
    assert [(p["epoch"], p["epoch_step"]) for p in progress[5:7]] == [(0, 6), (1, 1)]
    assert all(math.isfinite(p["loss"]) and p["lr"] == pytest.approx(1e-2) for p in progress)
    statuses = [s["text"] for s in recorder.of(Event.STATUS) if not s["text"].startswith("caching")]
    assert statuses[:3] == ["loading model", "preparing data", "training"]
    assert statuses[-2:] == ["saving", "done"]
    name, finished = recorder.events[-1]
    assert name is Event.FINISHED and finished["stopped"] is False
    assert finished["output"] == str(run_dir / "models" / "demo_lora.safetensors")


def test_scheduled_sampling_skips_the_first(short_run):
    recorder, run_dir = short_run
    samples = recorder.of(Event.SAMPLE_DEFAULT)  # due at steps 5 and 10; the first is skipped
    assert [(s["global_step"], s["path"]) for s in samples] == [
        (10, "samples/default/10-0.png"), (10, "samples/default/10-1.png")]
    assert samples[0]["seed"] == 42 and samples[0]["steps"] == 2
    assert Image.open(run_dir / samples[0]["path"]).size == (64, 64)


def test_saved_lora_loads_into_a_pipeline(short_run, demo_workspace):
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file
    output = short_run[0].events[-1][1]["output"]
    pipeline = StableDiffusionPipeline.from_pretrained(demo_workspace[0] / "models" / "tiny-sd15")
    pipeline.load_lora_weights(str(short_run[1] / "models"), weight_name="demo_lora.safetensors")
    lora_layers = [m for m in pipeline.unet.modules() if hasattr(m, "lora_A") and m.lora_A]
    assert len(lora_layers) == 32  # to_q, to_k, to_v, to_out.0 of attn1 and attn2 in 4 blocks
    assert {scale for m in lora_layers for scale in m.scaling.values()} == {0.5}  # alpha 2 / rank 4
    saved = load_file(output)
    assert all(key.startswith("unet.") for key in saved) and len(saved) == 2 * len(lora_layers)
    assert any(value.abs().sum() > 0 for key, value in saved.items() if "lora_B" in key or "lora.up" in key)


def test_stop_ends_early_with_a_backup_and_a_saved_output(demo_workspace, base_config, tmp_path):
    recorder = run(demo_workspace, base_config, tmp_path, at_step={3: [command("stop")]},
                   backup_before_save=True)
    assert recorder.of(Event.PROGRESS)[-1]["global_step"] == 3
    finished = recorder.of(Event.FINISHED)
    assert finished == [{"stopped": True, "output": str(tmp_path / "models" / "demo_lora.safetensors")}]
    assert (tmp_path / "models" / "demo_lora.safetensors").is_file()
    assert [p.name.endswith("-step3") for p in (tmp_path / "backups").iterdir()] == [True]


def test_backup_command_writes_a_complete_folder(demo_workspace, base_config, tmp_path):
    recorder = run(demo_workspace, base_config, tmp_path,
                   at_step={2: [command("backup"), command("save")], 4: [command("stop")]},
                   backup_before_save=False)
    (backup,) = (tmp_path / "backups").iterdir()
    assert backup.name.endswith("-step2")
    assert {p.name for p in backup.iterdir()} == {"trained.safetensors", "training_state.safetensors",
                                                   "training_state.json", "progress.json", "config.json"}
    progress = json.loads((backup / "progress.json").read_text())
    assert (progress["global_step"], progress["epoch"], progress["epoch_step"]) == (2, 0, 2)
    assert json.loads((backup / "config.json").read_text())["lora_rank"] == 4
    assert [p.name.endswith("-step2.safetensors") for p in (tmp_path / "saves").iterdir()] == [True]
    assert "creating backup" in [s["text"] for s in recorder.of(Event.STATUS)]


def test_custom_sample_writes_a_png_and_reports_it(demo_workspace, base_config, tmp_path):
    request = {"prompt": "a red square on a white background", "negative_prompt": "blue",
               "seed": -1, "steps": 3, "cfg_scale": 2.0, "width": 64, "height": 48}
    broken = {"prompt": "x", "steps": "many"}
    recorder = run(demo_workspace, base_config, tmp_path, at_step={
        1: [command("sample_custom", sample=request), command("sample_custom", sample=broken)],
        2: [command("stop")]})
    assert any("sample request skipped" in log["text"] for log in recorder.of(Event.LOG))
    (sample,) = recorder.of(Event.SAMPLE_CUSTOM)
    assert sample["path"] == "samples/custom/1-0.png"
    assert Image.open(tmp_path / sample["path"]).size == (64, 48)
    assert isinstance(sample["seed"], int) and sample["seed"] >= 0
    assert {k: sample[k] for k in ("prompt", "negative_prompt", "steps", "cfg_scale", "global_step",
                                   "epoch")} == {**{k: request[k] for k in ("prompt", "negative_prompt",
                                                                            "steps", "cfg_scale")},
                                                 "global_step": 1, "epoch": 0}
    assert [p["step"] for p in recorder.of(Event.SAMPLE_PROGRESS)] == [1, 2, 3]


def test_sampling_leaves_training_reproducible(demo_workspace, base_config, tmp_path):
    def losses(run_dir, at_step):
        recorder = run(demo_workspace, base_config, run_dir, at_step=at_step, epochs=1)
        return [p["loss"] for p in recorder.of(Event.PROGRESS)]

    plain = losses(tmp_path / "a", {})
    sampled = losses(tmp_path / "b", {2: [command("sample_default")]})
    assert plain == sampled and len(plain) == 6


def test_stop_while_starting_skips_training(demo_workspace, base_config, tmp_path):
    recorder = run(demo_workspace, base_config, tmp_path, before=[command("stop")])
    assert recorder.of(Event.PROGRESS) == []
    assert recorder.of(Event.FINISHED) == [{"stopped": True, "output": None}]


def test_missing_base_model_names_the_path(demo_workspace, base_config, tmp_path):
    from webapp.trainer.builtin.families import ModelLoadError
    with pytest.raises(ModelLoadError, match="models/no-such-model"):
        run(demo_workspace, base_config, tmp_path, base_model_name="models/no-such-model")


def test_unreadable_and_tiny_images_are_skipped_with_a_warning(tmp_path):
    from webapp.trainer.builtin import concepts
    from webapp.config.builtin.train_settings import ConceptSpec
    Image.new("RGB", (80, 64), "red").save(tmp_path / "good.png")
    (tmp_path / "good.txt").write_text("a red square\n")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "tiny.webp")
    logged = []
    kept = concepts.find_items([ConceptSpec(path=str(tmp_path))], 64,
                               lambda text, level="info": logged.append(text), lambda: False)
    assert [(i.image_path.name, i.caption) for i in kept] == [("good.png", "a red square")]
    assert any("broken.jpg" in line for line in logged) and any("tiny.webp" in line for line in logged)


def test_loss_falls_on_the_demo(demo_workspace, base_config, tmp_path):
    recorder = run(demo_workspace, base_config, tmp_path, epochs=8)  # 48 steps at lr 1e-2
    losses = [p["loss"] for p in recorder.of(Event.PROGRESS)]
    first, last = statistics.mean(losses[:12]), statistics.mean(losses[-12:])
    assert last < 0.9 * first, (first, last)


@pytest.mark.parametrize("every, unit, skip, expected", [
    (3, "STEP", 0, [3, 6, 9]),
    (3, "STEP", 2, [9]),
    (1, "EPOCH", 0, [4, 8]),        # 4 steps an epoch: at each epoch's end
    (0.5, "EPOCH", 0, [2, 4, 6, 8, 10]),
    (1, "ALWAYS", 0, list(range(1, 11))),
    (5, "NEVER", 0, []),
    (0, "STEP", 0, []),
])
def test_schedule_by_steps(every, unit, skip, expected):
    schedule = Schedule(every, unit, steps_per_epoch=4, skip_first=skip)
    assert [step for step in range(1, 11) if schedule.due(step)] == expected


def test_schedule_by_time():
    schedule = Schedule(2, "SECOND", start_time=100.0)
    assert [t for t in (100.5, 101.9, 102.0, 103.0, 104.5) if schedule.due(0, t)] == [102.0, 104.5]
    minutes = Schedule(1, "MINUTE")
    assert [t for t in (30.0, 61.0, 90.0, 121.5) if minutes.due(0, t)] == [61.0, 121.5]
