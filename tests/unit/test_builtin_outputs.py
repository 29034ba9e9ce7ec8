"""The built-in trainer's outputs reload where they are meant to: LoRAs with diffusers'
``load_lora_weights`` (diffusers/peft keys and kohya's), fine-tunes with ``from_pretrained`` and
``from_single_file`` (diffusers' own converters are the oracle for our original-layout keys) and
offline with our ``single_file.load_pipeline``, embeddings with ``load_textual_inversion``. On the
tiny SD 1.5, SD 2.x and SDXL models; every output carries its metadata and a failed write leaves
nothing behind."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from webapp.trainer.builtin import families, outputs, single_file
from webapp.trainer.builtin.methods import text_lora_targets, unet_lora_targets
from webapp.trainer.builtin.tiny_model import build_tiny_model
from webapp.trainer.demo import CAPTION_WORDS
from webapp.config.builtin.output_formats import SUPPORTED_OUTPUT_FORMATS

FAMILIES = ("sd15", "sd2", "sdxl")
MODEL_TYPES = {"sd15": "STABLE_DIFFUSION_15", "sd2": "STABLE_DIFFUSION_21",
               "sdxl": "STABLE_DIFFUSION_XL_10_BASE"}
UNET_ALPHA, TEXT_ALPHA, RANK = 2.0, 8.0, 4  # different scales per part: alphas must survive
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(root / family, CAPTION_WORDS, family=family) for family in FAMILIES}


def metadata_for(family: str, method: str) -> dict[str, str]:
    config = {"model_type": MODEL_TYPES[family], "training_method": method, "base_model_name": "tiny",
              "lora_rank": RANK, "lora_alpha": UNET_ALPHA, "secrets": {"huggingface_token": "hf_x"}}
    return outputs.output_metadata(config, global_step=12, epoch=2)


def load_parts(tiny, family):
    return families.load_model(str(tiny[family]), MODEL_TYPES[family], CPU)


def fresh_pipeline(tiny, family):
    family_ = families.FAMILIES[family]
    extra = {} if family_.is_xl else {"safety_checker": None, "requires_safety_checker": False}
    return family_.pipeline_class.from_pretrained(tiny[family], **extra)


def image(pipeline) -> np.ndarray:
    pipeline.scheduler = DDIMScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(3)
    return pipeline("a red circle on a blue background", num_inference_steps=3, generator=generator,
                    height=64, width=64, guidance_scale=3.0, output_type="np").images[0]


def with_lora(parts):
    """The trainer's LoRA (layer filter "full": every Linear/Conv2d of the UNet, attention + MLP
    of the text encoders) with random B matrices, so that it changes the image."""
    torch.manual_seed(0)
    parts.unet.add_adapter(lora_config(unet_lora_targets(parts.unet, []), UNET_ALPHA))
    for encoder in parts.text_encoders:
        encoder.add_adapter(lora_config(text_lora_targets(encoder, []), TEXT_ALPHA))
    for module in (parts.unet, *parts.text_encoders):
        for name, param in module.named_parameters():
            if "lora_B" in name:
                param.data = torch.randn_like(param) * 0.2
    return parts


def lora_config(targets, alpha):
    from peft import LoraConfig
    return LoraConfig(r=RANK, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                      init_lora_weights=True)


def file_metadata(path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def assert_same_weights(expected_module, loaded_module, name):
    expected, loaded = expected_module.state_dict(), loaded_module.state_dict()
    assert set(expected) == set(loaded), name
    different = [key for key in expected if not torch.equal(expected[key], loaded[key])]
    assert not different, f"{name}: {different[:3]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_reloads_with_diffusers_in_both_formats(tiny, tmp_path, family):
    parts = with_lora(load_parts(tiny, family))
    reference = image(parts.pipeline())
    assert np.abs(reference - image(fresh_pipeline(tiny, family))).max() > 0.05  # the LoRA matters
    metadata = metadata_for(family, "LORA")
    for output_format in ("SAFETENSORS", "KOHYA_LORA"):
        path = outputs.save_lora(parts, tmp_path / "out" / f"{output_format}.safetensors",
                                 output_format, torch.float32, metadata)
        pipeline = fresh_pipeline(tiny, family)
        pipeline.load_lora_weights(str(path.parent), weight_name=path.name)
        np.testing.assert_allclose(image(pipeline), reference, atol=1e-5, err_msg=output_format)
        saved = file_metadata(path)
        assert saved["otweb.global_step"] == "12" and saved["ss_network_dim"] == str(RANK)

    diffusers_keys = load_file(tmp_path / "out" / "SAFETENSORS.safetensors")
    assert "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight" in diffusers_keys
    assert "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight" in diffusers_keys
    saved = file_metadata(tmp_path / "out" / "SAFETENSORS.safetensors")
    adapters = json.loads(saved[outputs.LORA_METADATA_KEY])
    assert (adapters["unet.r"], adapters["unet.lora_alpha"], adapters["text_encoder.lora_alpha"]) == \
        (RANK, UNET_ALPHA, TEXT_ALPHA)

    kohya = load_file(tmp_path / "out" / "KOHYA_LORA.safetensors")
    text_prefixes = ["lora_te1", "lora_te2"] if family == "sdxl" else ["lora_te"]
    parts_of = {"lora_unet": "unet", **dict(zip(text_prefixes, ["text_encoder", "text_encoder_2"]))}
    counts = {prefix: sum(key.startswith(part + ".") and key.endswith(".lora_A.weight")
                          for key in diffusers_keys)  # one layer per lora_A, as the other format has
              for prefix, part in parts_of.items()}
    assert counts["lora_unet"] == len(unet_lora_targets(load_parts(tiny, family).unet, []))
    alphas = {key: value for key, value in kohya.items() if key.endswith(".alpha")}
    for prefix, count in counts.items():
        mine = [key for key in alphas if key.startswith(prefix + "_")]
        assert len(mine) == count, prefix
        expected = UNET_ALPHA if prefix == "lora_unet" else TEXT_ALPHA
        assert all(alphas[key].item() == expected for key in mine), prefix
    assert len(kohya) == 3 * sum(counts.values())
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    assert kohya[f"{name}.lora_down.weight"].shape[0] == RANK
    assert kohya[f"{name}.lora_up.weight"].shape[1] == RANK
    assert f"{text_prefixes[-1]}_text_model_encoder_layers_1_mlp_fc2.lora_up.weight" in kohya
    assert "lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight" in kohya  # a Conv2d's LoRA
    if family == "sdxl":
        assert "lora_unet_label_emb_0_0.alpha" in kohya  # the add_embedding, by its SGM name


def perturbed(parts):
    """A "fine-tune": the UNet's and the text encoders' own weights changed."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in (parts.unet, *parts.text_encoders):
            for param in module.parameters():
                param.add_(torch.randn_like(param) * 0.01)
    return parts


def assert_pipeline_matches(parts, pipeline, names=None):
    modules = {"unet": parts.unet, "vae": parts.vae, "text_encoder": parts.text_encoders[0]}
    if parts.family.is_xl:
        modules["text_encoder_2"] = parts.text_encoders[1]
    for name in names or modules:
        assert_same_weights(modules[name], getattr(pipeline, name), name)


@pytest.mark.parametrize("family", FAMILIES)
def test_fine_tune_reloads_exactly(tiny, tmp_path, family):
    parts = perturbed(load_parts(tiny, family))
    metadata = metadata_for(family, "FINE_TUNE")

    folder = outputs.save_fine_tune(parts, tmp_path / "model", "DIFFUSERS", torch.float32, metadata)
    assert_pipeline_matches(parts, parts.family.pipeline_class.from_pretrained(folder))
    assert json.loads((folder / outputs.METADATA_FILE).read_text())["otweb.global_step"] == "12"

    extra = {} if parts.family.is_xl else {"safety_checker": None, "requires_safety_checker": False}
    for output_format, name in (("SAFETENSORS", "model.safetensors"), ("CKPT", "model.ckpt")):
        path = outputs.save_fine_tune(parts, tmp_path / name, output_format, torch.float32, metadata)
        assert path.name == name
        # the oracle: diffusers' own converters with the tiny model's configs (its SDXL encoders
        # differ in width, as SDXL's do: diffusers tells them apart by width)
        oracle = parts.family.pipeline_class.from_single_file(str(path), config=str(tiny[family]), **extra)
        assert_pipeline_matches(parts, oracle)
        ours = single_file.load_pipeline(path, parts.family)  # offline, from the file's own configs
        assert_pipeline_matches(parts, ours)
        assert ours.scheduler.config.prediction_type == parts.scheduler.config.prediction_type
        assert single_file.read_metadata(path)["otweb.model_type"] == MODEL_TYPES[family]

    reloaded = families.load_model(str(tmp_path / "model.safetensors"), MODEL_TYPES[family], CPU)
    assert reloaded.source == {"kind": "single_file"}
    assert_same_weights(parts.unet, reloaded.unet, "unet")
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as handle:
        names = set(handle.keys())
    text_key = {"sd15": "cond_stage_model.transformer.text_model.final_layer_norm.weight",
                "sd2": "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight",
                "sdxl": "conditioner.embedders.1.model.text_projection"}[family]
    assert {"model.diffusion_model.out.2.weight", "first_stage_model.decoder.up.0.block.0.conv1.weight",
            text_key} <= names


def test_output_dtype_is_applied(tiny, tmp_path):
    parts = with_lora(perturbed(load_parts(tiny, "sd15")))
    metadata = metadata_for("sd15", "LORA")
    lora = load_file(outputs.save_lora(parts, tmp_path / "k.safetensors", "KOHYA_LORA", torch.bfloat16,
                                       metadata))
    assert {value.dtype for key, value in lora.items() if not key.endswith(".alpha")} == {torch.bfloat16}
    assert {value.dtype for key, value in lora.items() if key.endswith(".alpha")} == {torch.float32}
    lora = load_file(outputs.save_lora(parts, tmp_path / "d.safetensors", "DIFFUSERS_LORA", torch.float16,
                                       metadata))
    assert {value.dtype for value in lora.values()} == {torch.float16}
    parts = perturbed(load_parts(tiny, "sd15"))
    checkpoint = load_file(outputs.save_fine_tune(parts, tmp_path / "f.safetensors", "SAFETENSORS",
                                                  torch.float16, metadata))
    assert {value.dtype for value in checkpoint.values()} == {torch.float16}
    folder = outputs.save_fine_tune(parts, tmp_path / "f", "DIFFUSERS", torch.bfloat16, metadata)
    unet = load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")
    assert {value.dtype for value in unet.values()} == {torch.bfloat16}
    assert parts.unet.dtype == torch.float32  # the model itself was not cast


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_reloads_with_load_textual_inversion(tiny, tmp_path, family):
    parts = load_parts(tiny, family)
    torch.manual_seed(2)
    vectors = [torch.randn(3, encoder.config.hidden_size) for encoder in parts.text_encoders]
    path = outputs.save_embedding(parts, vectors, tmp_path / "emb.safetensors", torch.float32,
                                  metadata_for(family, "EMBEDDING"))
    pipeline = fresh_pipeline(tiny, family)
    if family == "sdxl":  # as diffusers documents for SDXL embeddings: once per encoder
        state = load_file(path)
        assert set(state) == {"clip_l", "clip_g"}
        pipeline.load_textual_inversion(state["clip_l"], token="<emb>", text_encoder=pipeline.text_encoder,
                                        tokenizer=pipeline.tokenizer)
        pipeline.load_textual_inversion(state["clip_g"], token="<emb>", text_encoder=pipeline.text_encoder_2,
                                        tokenizer=pipeline.tokenizer_2)
        pairs = [(pipeline.tokenizer, pipeline.text_encoder), (pipeline.tokenizer_2, pipeline.text_encoder_2)]
    else:
        assert set(load_file(path)) == {"emb_params"}
        pipeline.load_textual_inversion(str(path), token="<emb>")
        pairs = [(pipeline.tokenizer, pipeline.text_encoder)]
    for (tokenizer, encoder), expected in zip(pairs, vectors):
        ids = tokenizer.convert_tokens_to_ids(["<emb>", "<emb>_1", "<emb>_2"])
        assert torch.equal(encoder.get_input_embeddings().weight[ids], expected)
    assert file_metadata(path)["modelspec.architecture"].endswith("/textual-inversion")


def test_a_failed_write_leaves_nothing_behind(tiny, tmp_path, monkeypatch):
    parts = with_lora(load_parts(tiny, "sd15"))
    folder = tmp_path / "out"
    old = outputs.save_lora(parts, folder / "lora.safetensors", "SAFETENSORS", torch.float32, {})
    before = old.read_bytes()

    def half_written(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "save_file", half_written)
    monkeypatch.setattr(single_file, "save_file", half_written)
    with pytest.raises(OSError):
        outputs.save_lora(parts, folder / "lora.safetensors", "KOHYA_LORA", torch.float32, {})
    with pytest.raises(OSError):
        outputs.save_embedding(parts, [torch.zeros(1, 32)], folder / "emb.safetensors", torch.float32, {})
    plain = load_parts(tiny, "sd15")
    with pytest.raises(OSError):
        outputs.save_fine_tune(plain, folder / "model.safetensors", "SAFETENSORS", torch.float32, {})
    with pytest.raises(OSError):  # save_pretrained is done; the cast to float16 fails
        outputs.save_fine_tune(plain, folder / "model", "DIFFUSERS", torch.float16, {})
    assert sorted(path.name for path in folder.iterdir()) == ["lora.safetensors"]
    assert old.read_bytes() == before


def test_a_foreign_single_file_offline_says_to_pass_a_folder(tiny, tmp_path, monkeypatch):
    from diffusers.loaders import single_file as diffusers_single_file
    from huggingface_hub.errors import LocalEntryNotFoundError

    parts = load_parts(tiny, "sd15")
    path = tmp_path / "downloaded.safetensors"  # original keys, none of our configs
    save_file(single_file.cast(single_file.original_state_dict(parts), torch.float16), str(path))

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot reach the hub")

    monkeypatch.setattr(diffusers_single_file, "_download_diffusers_model_config_from_hub", offline)
    with pytest.raises(ValueError, match="diffusers folder") as caught:
        single_file.load_pipeline(path, parts.family)
    assert str(path) in str(caught.value)
    with pytest.raises(families.ModelLoadError, match="downloaded.safetensors"):
        families.load_model(str(path), "STABLE_DIFFUSION_15", CPU)


def test_output_metadata_and_formats():
    metadata = metadata_for("sd2", "LORA")
    assert all(isinstance(value, str) for value in metadata.values())
    assert (metadata["otweb.base_model"], metadata["otweb.training_method"], metadata["ss_steps"]) == \
        ("tiny", "LORA", "12")
    assert (metadata["ss_base_model_version"], metadata["ss_v2"], metadata["ss_network_alpha"]) == \
        ("sd_v2", "True", str(UNET_ALPHA))
    assert metadata["modelspec.architecture"] == "stable-diffusion-v2-768-v/lora"
    config = json.loads(metadata["otweb.config"])
    assert config["model_type"] == "STABLE_DIFFUSION_21" and "secrets" not in config
    assert metadata_for("sdxl", "FINE_TUNE")["ss_base_model_version"] == "sdxl_base_v1-0"
    assert SUPPORTED_OUTPUT_FORMATS["LORA"][0] == "SAFETENSORS"
    assert "KOHYA_LORA" in SUPPORTED_OUTPUT_FORMATS["LORA"]
    assert "DIFFUSERS" in SUPPORTED_OUTPUT_FORMATS["FINE_TUNE"]
    # the web validates configs with it: importing it must not import torch
    check = "import sys, webapp.config.builtin.output_formats; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check]).returncode == 0
