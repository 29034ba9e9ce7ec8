"""Every model family × training method on the tiny models: a few steps train, the loss is
finite, the output reloads with diffusers' own loaders, and an image made from the reloaded
output matches the trainer's sample at the same step and seed."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from webapp.trainer.commands import TrainCommands
from webapp.trainer.demo import FAMILIES, build_demo
from webapp.protocol import Event

from support.recording import RecordingCallbacks

STEPS = 3  # one epoch of 3 batches of 4 (12 of the 24 shapes per epoch at batch 8 would be 3 too)
PROMPT = "a red circle on a blue background"
PLACEHOLDER = "<shape-token>"


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory):
    """family -> (workspace, demo config of that family)."""
    root = tmp_path_factory.mktemp("families")
    found = {}
    for family in FAMILIES:
        path = build_demo(root / "workspace", root / "configs", family=family)
        found[family] = (root / "workspace", json.loads(path.read_text()))
    return found


def train(workspace, config, run_dir, **overrides) -> RecordingCallbacks:
    from webapp.trainer.builtin import BuiltinBackend
    sample = {"prompt": PROMPT, "seed": 5, "diffusion_steps": 3, "cfg_scale": 2.0,
              "width": 64, "height": 64, "noise_scheduler": "DDIM"}
    config = {**config, "epochs": 1, "batch_size": 8, "sample_after": STEPS,
              "sample_after_unit": "STEP", "samples": [sample], "learning_rate": 5e-3, **overrides}
    recorder = RecordingCallbacks()
    backend = BuiltinBackend(config, recorder, TrainCommands(), run_dir=run_dir, base_dir=workspace)
    backend.start()
    backend.train()
    backend.end()
    assert len(recorder.of(Event.PROGRESS)) == STEPS
    assert all(np.isfinite(e["loss"]) for e in recorder.of(Event.PROGRESS))
    return recorder


def trainer_image(recorder: RecordingCallbacks, run_dir) -> np.ndarray:
    made = [e for e in recorder.of(Event.SAMPLE_DEFAULT) if e["global_step"] == STEPS]
    assert len(made) == 1
    return np.asarray(Image.open(run_dir / made[0]["path"]).convert("RGB"), dtype=np.float32)


def pipeline_image(pipeline, prompt: str = PROMPT) -> np.ndarray:
    from diffusers import DDIMScheduler
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    image = pipeline(prompt=prompt, num_inference_steps=3, guidance_scale=2.0, width=64, height=64,
                     generator=torch.Generator("cpu").manual_seed(5)).images[0]
    return np.asarray(image.convert("RGB"), dtype=np.float32)


def base_pipeline(workspace, config):
    from diffusers import DiffusionPipeline
    return DiffusionPipeline.from_pretrained(workspace / config["base_model_name"])


def assert_same_image(ours: np.ndarray, theirs: np.ndarray) -> None:
    # the same weights through the same pipeline; PNG rounding and float order allow ~1 level
    assert np.abs(ours - theirs).mean() < 1.0, np.abs(ours - theirs).mean()


def trains_text(family: str) -> dict:
    parts = {"text_encoder": {"train": True, "weight_dtype": "FLOAT_32"}}
    if family == "sdxl":
        parts["text_encoder_2"] = {"train": True, "weight_dtype": "FLOAT_32"}
    return parts


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("output_format", ["SAFETENSORS", "KOHYA_LORA"])
def test_lora_reloads_in_diffusers_and_samples_match(workspaces, tmp_path, family, output_format):
    workspace, config = workspaces[family]
    recorder = train(workspace, config, tmp_path, output_model_format=output_format,
                     layer_filter_preset="attn-mlp", **trains_text(family))
    output = recorder.of(Event.FINISHED)[0]["output"]
    pipeline = base_pipeline(workspace, config)
    pipeline.load_lora_weights(str(tmp_path / "models"), weight_name=output.rsplit("/", 1)[-1])
    assert_same_image(trainer_image(recorder, tmp_path), pipeline_image(pipeline))


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("output_format", ["DIFFUSERS", "SAFETENSORS"])
def test_fine_tune_reloads_and_samples_match(workspaces, tmp_path, family, output_format):
    from diffusers import DiffusionPipeline
    workspace, config = workspaces[family]
    destination = "models/fine-tuned" + ("" if output_format == "DIFFUSERS" else ".safetensors")
    recorder = train(workspace, config, tmp_path, training_method="FINE_TUNE",
                     output_model_format=output_format, output_model_destination=destination,
                     learning_rate=1e-4, **trains_text(family))
    output = recorder.of(Event.FINISHED)[0]["output"]
    if output_format == "DIFFUSERS":
        pipeline = DiffusionPipeline.from_pretrained(output)
    else:
        cls = type(base_pipeline(workspace, config))
        pipeline = cls.from_single_file(output, config=str(workspace / config["base_model_name"]))
    assert_same_image(trainer_image(recorder, tmp_path), pipeline_image(pipeline))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_embedding_reloads_and_samples_match(workspaces, tmp_path, family):
    workspace, config = workspaces[family]
    prompt = f"a {PLACEHOLDER} on a blue background"
    recorder = train(workspace, config, tmp_path, training_method="EMBEDDING",
                     output_model_destination="models/shape.safetensors", learning_rate=5e-2,
                     embedding={"placeholder": PLACEHOLDER, "token_count": 2,
                                "initial_embedding_text": "circle"},
                     samples=[{"prompt": prompt, "seed": 5, "diffusion_steps": 3, "cfg_scale": 2.0,
                               "width": 64, "height": 64, "noise_scheduler": "DDIM"}])
    output = recorder.of(Event.FINISHED)[0]["output"]
    pipeline = base_pipeline(workspace, config)
    if family == "sdxl":
        from safetensors.torch import load_file
        vectors = load_file(output)
        pipeline.load_textual_inversion(vectors["clip_l"], token=PLACEHOLDER,
                                        text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer)
        pipeline.load_textual_inversion(vectors["clip_g"], token=PLACEHOLDER,
                                        text_encoder=pipeline.text_encoder_2, tokenizer=pipeline.tokenizer_2)
    else:
        pipeline.load_textual_inversion(output, token=PLACEHOLDER)
    assert_same_image(trainer_image(recorder, tmp_path), pipeline_image(pipeline, prompt))


def test_unreadable_base_models_are_named(tmp_path):
    from webapp.trainer.builtin.families import ModelLoadError, family_of, read_pipeline
    family = family_of("STABLE_DIFFUSION_XL_10_BASE")
    (tmp_path / "notes.txt").write_text("no model")
    with pytest.raises(ModelLoadError, match="notes.txt is a file but not a checkpoint"):
        read_pipeline(str(tmp_path / "notes.txt"), family)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelLoadError, match="missing model_index.json.*text_encoder_2"):
        read_pipeline(str(tmp_path / "folder"), family)
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="broken.safetensors"):
        read_pipeline(str(tmp_path / "broken.safetensors"), family)
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_pipeline(str(tmp_path / "missing"), family)


def test_otweb_demo_builds_each_family(tmp_path):
    from click.testing import CliRunner
    from webapp.cli import main
    args = ["--workspace", str(tmp_path / "workspace"), "--config-dir", str(tmp_path / "configs")]
    result = CliRunner().invoke(main, ["demo", "--model", "sdxl", *args])
    assert result.exit_code == 0, result.output
    assert "demo-sdxl.json" in result.output
    config = json.loads((tmp_path / "configs" / "demo-sdxl.json").read_text())
    assert config["model_type"] == "STABLE_DIFFUSION_XL_10_BASE"
    assert (tmp_path / "workspace" / "models" / "tiny-sdxl" / "text_encoder_2" / "config.json").is_file()
    assert CliRunner().invoke(main, ["demo", "--model", "flux", *args]).exit_code != 0
