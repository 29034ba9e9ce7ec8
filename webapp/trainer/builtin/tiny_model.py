"""A tiny Stable Diffusion 1.x model built offline from configs: the demo's and the tests' base.

64 px images, a VAE with an 8x downscale (4 x 8 x 8 latents, as SD 1.x has 4 x 64 x 64 at
512 px) whose weights make it a mosaic codec (mosaic_vae.py), a random two-block UNet, a random
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
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .mosaic_vae import make_mosaic_vae

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
LATENT_SIZE = 8


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


def make_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def make_vae() -> AutoencoderKL:
    # four blocks: an 8x downscale, as in SD 1.x; 4 channels a GroupNorm group in the decoder's
    # last block, as make_mosaic_vae needs
    blocks = (16, 32, 64, 64)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * len(blocks),
        up_block_types=("UpDecoderBlock2D",) * len(blocks),
        layers_per_block=1, norm_num_groups=4, sample_size=LATENT_SIZE * 8,
        scaling_factor=1.8)  # mosaic latents of the demo shapes have a std of about 1 / 1.8


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8)


def make_scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", prediction_type="epsilon",
                         clip_sample=False, steps_offset=1)


def build_tiny_model(folder: Path, words: list[str], seed: int = 0) -> Path:
    """Write a complete diffusers StableDiffusionPipeline folder (random UNet and text encoder,
    the mosaic VAE), into a temp folder renamed into place."""
    folder = Path(folder)
    temp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(temp, ignore_errors=True)
    torch.manual_seed(seed)
    tokenizer = make_tokenizer(temp / "tokenizer-source", words)
    text_encoder, vae, unet = make_text_encoder(tokenizer), make_vae(), make_unet()
    make_mosaic_vae(vae)
    pipeline = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=make_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipeline.save_pretrained(temp)
    for name in ("vocab.json", "merges.txt"):  # the files the tokenizer was made from, kept
        os.replace(temp / "tokenizer-source" / name, temp / "tokenizer" / name)
    shutil.rmtree(temp / "tokenizer-source")
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, folder)
    return folder
