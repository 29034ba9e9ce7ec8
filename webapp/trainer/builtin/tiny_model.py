"""Tiny Stable Diffusion models (1.x, 2.x, XL) built offline from configs: the demo's and the tests' base.

64 px images, a VAE with a 4x downscale (4 x 16 x 16 latents; SD 1.x has 8x, 4 x 64 x 64 at 512 px:
at 8x the demo's 64 px shapes were 8x8 blobs) whose weights make it a mosaic codec (mosaic_vae.py),
a random two-block UNet (cross-attention on its 8x8 level only, as cheap as before), a random
two-layer CLIP text encoder of width 32 and a CLIP tokenizer whose vocabulary is written here:
single characters plus the caption words.
"""
from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

import torch
from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from webapp.trainer.builtin.mosaic_vae import make_mosaic_vae

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
LATENT_SIZE = 16
DOWNSCALE = 4  # 64 px images -> 16 x 16 latents: 4 px mosaic tiles, fine enough to tell the shapes apart
FAMILIES = ("sd15", "sd2", "sdxl")


def write_tokenizer_files(folder: Path, words: list[str]) -> tuple[Path, Path]:
    """vocab.json and merges.txt for CLIP's byte-level BPE: every lower-case letter and digit
    alone and word-final (``</w>``), and merges that build each word into one token."""
    vocab: list[str] = [BOS, EOS]
    symbols = string.ascii_lowercase + string.digits + string.punctuation
    for char in symbols:
        vocab += [char, char + "</w>"]
    merges: list[str] = []
    for word in words:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = f"{current} {piece}"
            current += piece
            if merge not in merges:
                merges.append(merge)
            if current not in vocab:
                vocab.append(current)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file, merges_file = folder / "vocab.json", folder / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_file, merges_file


def make_tokenizer(folder: Path, words: list[str]) -> CLIPTokenizer:
    vocab_file, merges_file = write_tokenizer_files(folder, words)
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77,
                         bos_token=BOS, eos_token=EOS, pad_token=EOS, unk_token=EOS)


def text_config(tokenizer: CLIPTokenizer, hidden_act: str = "quick_gelu", width: int = 32) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32, hidden_act=hidden_act,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def make_text_encoder(tokenizer: CLIPTokenizer, hidden_act: str = "quick_gelu") -> CLIPTextModel:
    # SD 1.x has OpenAI's CLIP (quick_gelu); SD 2.x and SDXL's second encoder OpenCLIP (gelu)
    return CLIPTextModel(text_config(tokenizer, hidden_act))


def make_vae() -> AutoencoderKL:
    # three blocks: a 4x downscale (SD 1.x has four, 8x); 4 channels a GroupNorm group in the
    # decoder's last block, as make_mosaic_vae needs
    blocks = (16, 32, 64)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        layers_per_block=1, norm_num_groups=4, sample_size=LATENT_SIZE * DOWNSCALE,
        scaling_factor=1.8)  # mosaic latents of the demo shapes have a std of about 1 / 1.8


def make_unet(family: str = "sd15") -> UNet2DConditionModel:
    """SD 1.x: attention through 1x1 convs; SD 2.x: linear projections; SDXL: linear projections,
    a cross-attention width of both encoders together and the pooled text + size/crop ids added
    to the time embedding ("text_time")."""
    shared = dict(sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
                  block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
                  norm_num_groups=8)
    if family == "sd15":
        return UNet2DConditionModel(cross_attention_dim=32, **shared)
    if family == "sd2":
        return UNet2DConditionModel(cross_attention_dim=32, use_linear_projection=True, **shared)
    # the second encoder is wider than the first, as in SDXL (768 + 1280): tools tell them apart
    # by width
    return UNet2DConditionModel(
        cross_attention_dim=32 + 64, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8, **shared)


def make_scheduler(family: str = "sd15") -> DDPMScheduler:
    # SD 2.x (768 px models) predicts v; SD 1.x, SDXL and the 2.x _BASE models predict the noise
    prediction = "v_prediction" if family == "sd2" else "epsilon"
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type=prediction,
                         clip_sample=False, steps_offset=1)


def make_pipeline(family: str, tokenizer_folder: Path, words: list[str]):
    """A diffusers pipeline of the family with random weights (the mosaic VAE)."""
    tokenizer = make_tokenizer(tokenizer_folder, words)
    vae, unet = make_vae(), make_unet(family)
    make_mosaic_vae(vae)
    if family == "sdxl":
        return StableDiffusionXLPipeline(
            vae=vae, text_encoder=make_text_encoder(tokenizer),
            text_encoder_2=CLIPTextModelWithProjection(text_config(tokenizer, "gelu", width=64)),
            tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
            scheduler=make_scheduler(family), force_zeros_for_empty_prompt=True)
    hidden_act = "gelu" if family == "sd2" else "quick_gelu"
    return StableDiffusionPipeline(
        vae=vae, text_encoder=make_text_encoder(tokenizer, hidden_act), tokenizer=tokenizer,
        unet=unet, scheduler=make_scheduler(family), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def build_tiny_model(folder: Path, words: list[str], seed: int = 0, family: str = "sd15") -> Path:
    """Write a complete diffusers pipeline folder of the family (sd15, sd2, sdxl; random UNet and
    text encoders, the mosaic VAE) into a temp folder renamed into place."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; one of {', '.join(FAMILIES)}")
    folder = Path(folder)
    temp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    torch.manual_seed(seed)
    pipeline = make_pipeline(family, temp / "tokenizer-source", words)
    pipeline.save_pretrained(temp)
    tokenizers = ["tokenizer", "tokenizer_2"] if family == "sdxl" else ["tokenizer"]
    for name in ("vocab.json", "merges.txt"):  # the files the tokenizer was made from, kept
        for tokenizer in tokenizers:
            shutil.copyfile(temp / "tokenizer-source" / name, temp / tokenizer / name)
    shutil.rmtree(temp / "tokenizer-source")
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, folder)
    return folder
