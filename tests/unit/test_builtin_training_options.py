"""Precision, memory and loss options of the built-in trainer on the tiny demo model: mixed
precision, weight dtypes, gradient checkpointing, EMA, gradient accumulation, per-part
learning rates and stop_training_after, offset noise, min-SNR; and what validation refuses."""
from __future__ import annotations

import math

import pytest
import torch

from webapp.trainer.commands import TrainCommands
from webapp.protocol import Event

from support.recording import RecordingCallbacks
from webapp.config.builtin.train_settings import ConfigError, TrainSettings


def backend_after(demo_workspace, config, tmp_path, **overrides):
    """A backend that has trained (ended: no; so its modules can be inspected) and its events."""
    from webapp.trainer.builtin import BuiltinBackend
    config = {**config, "epochs": 1, "sample_after_unit": "NEVER", **overrides}
    recorder = RecordingCallbacks()
    backend = BuiltinBackend(config, recorder, TrainCommands(), run_dir=tmp_path, base_dir=demo_workspace[0])
    backend.start()
    backend.train()
    return backend, recorder


def losses(recorder) -> list[float]:
    return [p["loss"] for p in recorder.of(Event.PROGRESS)]


def test_bfloat16_mixed_precision_with_bfloat16_frozen_weights(demo_workspace, demo_config, tmp_path):
    backend, recorder = backend_after(demo_workspace, demo_config, tmp_path, train_dtype="BFLOAT_16",
                                      unet={"train": True, "weight_dtype": "BFLOAT_16",
                                            "gradient_checkpointing": False},
                                      text_encoder={"train": False, "weight_dtype": "BFLOAT_16"})
    assert all(math.isfinite(loss) for loss in losses(recorder)) and len(losses(recorder)) == 6
    unet = backend.parts.unet
    lora = [p for n, p in unet.named_parameters() if "lora_" in n]
    frozen = [p for n, p in unet.named_parameters() if "lora_" not in n]
    assert {p.dtype for p in lora} == {torch.float32}  # the adapter trains in float32
    assert {p.dtype for p in frozen} == {torch.bfloat16}
    assert backend.parts.text_encoder.get_input_embeddings().weight.dtype == torch.bfloat16


def test_weight_dtype_without_mixed_precision_stays_float32_with_a_note(demo_workspace, demo_config, tmp_path):
    backend, recorder = backend_after(demo_workspace, demo_config, tmp_path, train_dtype="FLOAT_32",
                                      unet={"train": True, "weight_dtype": "FLOAT_16"})
    assert backend.parts.unet.conv_in.weight.dtype == torch.float32
    assert any("needs mixed precision" in e["text"] for e in recorder.of(Event.LOG))


def test_gradient_checkpointing_changes_memory_not_the_result(demo_workspace, demo_config, tmp_path):
    plain = losses(backend_after(demo_workspace, demo_config, tmp_path / "a",
                                 unet={"train": True, "gradient_checkpointing": False})[1])
    backend, recorder = backend_after(demo_workspace, demo_config, tmp_path / "b",
                                      unet={"train": True, "gradient_checkpointing": True})
    assert backend.parts.unet.is_gradient_checkpointing
    assert losses(recorder) == pytest.approx(plain, rel=1e-5)


def test_ema_output_is_the_average_not_the_live_weights(demo_workspace, demo_config, tmp_path):
    from safetensors.torch import load_file
    backend, recorder = backend_after(demo_workspace, demo_config, tmp_path, ema="GPU", ema_decay=0.5,
                                      ema_update_step_interval=1)
    assert backend.ema.updates == 6
    saved = load_file(recorder.of(Event.FINISHED)[0]["output"])
    live = {n: p for n, p in backend.parts.unet.named_parameters() if "lora_" in n}
    name = next(n for n in live if "lora_B" in n)
    key = "unet." + name.replace(".default", "")
    trained = [p for g in backend.groups for p in g.params.values()]
    shadow = backend.ema.shadow[next(i for i, p in enumerate(trained) if p is live[name])]
    assert torch.equal(saved[key], shadow)
    assert not torch.equal(saved[key], live[name].detach())


def test_gradient_accumulation_steps_the_optimizer_every_n_batches(demo_workspace, demo_config, tmp_path):
    _, recorder = backend_after(demo_workspace, demo_config, tmp_path, gradient_accumulation_steps=2,
                                learning_rate_scheduler="LINEAR", learning_rate_warmup_steps=0)
    rates = [p["lr"] for p in recorder.of(Event.PROGRESS)]
    # 6 batches = 3 optimizer steps: the LR (reported for the next step) moves after batches 2,
    # 4 and 6 only
    assert rates[0] > rates[1] == rates[2] > rates[3] == rates[4] > rates[5]
    assert rates[0] == pytest.approx(1e-2)
    assert rates[1] == pytest.approx(1e-2 * (1 - 1 / 3)) and rates[3] == pytest.approx(1e-2 * (1 - 2 / 3))


def test_per_part_learning_rates_and_stop_training_after(demo_workspace, demo_config, tmp_path):
    backend, _ = backend_after(demo_workspace, demo_config, tmp_path,
                               unet={"train": True, "learning_rate": 2e-3},
                               text_encoder={"train": True, "learning_rate": 5e-4,
                                             "stop_training_after": 2, "stop_training_after_unit": "STEP"})
    rates = {group["name"]: group["lr"] for group in backend.optimizer.param_groups}
    assert rates == {"unet": 2e-3, "text_encoder": 0.0}  # the text encoder stopped after 2 steps
    assert not backend.data.cache_texts  # a training text encoder: captions are encoded each step


def test_offset_noise_and_min_snr_weights():
    from diffusers import DDPMScheduler
    from webapp.trainer.builtin import loss
    latents = torch.zeros(3, 4, 8, 8)
    plain = loss.make_noise(latents, torch.Generator().manual_seed(1), 0.0)
    offset = loss.make_noise(latents, torch.Generator().manual_seed(1), 0.5)
    shift = offset - plain
    assert torch.allclose(shift, shift.mean(dim=(2, 3), keepdim=True))  # one constant per channel
    assert shift.abs().max() > 0
    for prediction in ("epsilon", "v_prediction"):
        scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                  prediction_type=prediction)
        steps = torch.tensor([0, 100, 500, 999])
        alphas = scheduler.alphas_cumprod[steps]
        snr = alphas / (1 - alphas)
        expected = torch.minimum(snr, torch.tensor(5.0)) / (snr + (1 if prediction == "v_prediction" else 0))
        got = loss.timestep_weights(scheduler, steps, "MIN_SNR_GAMMA", 5.0)
        assert torch.allclose(got, expected)
        assert torch.equal(loss.timestep_weights(scheduler, steps, "CONSTANT", 5.0), torch.ones(4))


@pytest.mark.parametrize("overrides, field, words", [
    ({"model_type": "FLUX_DEV_1"}, "model_type", "STABLE_DIFFUSION_XL_10_BASE"),
    ({"training_method": "FINE_TUNE_VAE"}, "training_method", "EMBEDDING"),
    ({"optimizer": {"optimizer": "CAME"}}, "optimizer", "PRODIGY"),
    ({"learning_rate_scheduler": "REX"}, "learning_rate_scheduler", "COSINE_WITH_HARD_RESTARTS"),
    ({"output_model_format": "DIFFUSERS"}, "output_model_format", "KOHYA_LORA"),
    ({"train_dtype": "FLOAT_8"}, "train_dtype", "BFLOAT_16"),
    ({"loss_weight_fn": "P2"}, "loss_weight_fn", "MIN_SNR_GAMMA"),
    ({"layer_filter_preset": "everything"}, "layer_filter_preset", "attn-mlp"),
    ({"unet": {"stop_training_after": 2, "stop_training_after_unit": "MINUTE"}},
     "unet.stop_training_after_unit", "EPOCH"),
])
def test_validation_names_the_field_and_what_is_supported(demo_config, overrides, field, words):
    with pytest.raises(ConfigError) as caught:
        TrainSettings.from_config({**demo_config, **overrides}, ".")
    errors = {e["field"]: e["message"] for e in caught.value.errors}
    assert any(name.startswith(field) for name in errors), errors
    assert words in " ".join(errors.values())


def test_every_family_preset_reads(demo_config):
    import json
    from pathlib import Path
    presets = Path(__file__).resolve().parents[3] / "shared" / "onetrainer" / "presets"
    defaults = json.loads((presets.parent / "default_train_config.json").read_text())
    for name in ("sd_1.5.json", "sd_1.5_LoRA.json", "sd_1.5_embedding.json", "sd_2.1_LoRA.json",
                 "sdxl_1.0.json", "sdxl_1.0_LoRA.json"):
        config = {**defaults, **json.loads((presets / name).read_text()),
                  "concepts": demo_config["concepts"], "samples": []}
        settings = TrainSettings.from_config(config, ".")
        assert settings.family in ("sd15", "sd2", "sdxl"), name
