"""Concept folders → square training images → latents and text embeddings cached in memory.

A concept folder holds images (jpg, png, webp) with same-name .txt captions. Each image is
resized so its short side is the resolution, then centre-cropped to a square. Images that
cannot be read, or are far smaller than the resolution, are skipped with a logged warning.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_UPSCALE = 4  # an image whose short side is under resolution / 4 is "tiny"


@dataclass
class Item:
    image_path: Path
    caption: str


@dataclass
class CachedData:
    latents: torch.Tensor      # N x 4 x h x w, scaled by the VAE's scaling factor
    embeddings: torch.Tensor   # N x tokens x width, the text encoder's last hidden state

    def __len__(self) -> int:
        return len(self.latents)


def find_items(concept_paths: list[str], log: Callable[..., None]) -> list[Item]:
    """The images of every concept folder (sorted), with their captions."""
    items, uncaptioned = [], 0
    for folder in map(Path, concept_paths):
        if not folder.is_dir():
            raise FileNotFoundError(f"concept folder not found: {folder}")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            caption_path = path.with_suffix(".txt")
            if caption_path.is_file():
                caption = caption_path.read_text(encoding="utf-8", errors="replace").strip()
            else:
                caption, uncaptioned = "", uncaptioned + 1
            items.append(Item(path, caption))
    if uncaptioned:
        log(f"{uncaptioned} image(s) have no same-name .txt caption; they train with an empty "
            "prompt", "warning")
    return items


def load_square(path: Path, resolution: int) -> torch.Tensor:
    """3 x resolution x resolution in [-1, 1]; raises OSError/ValueError for a bad image."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    short = min(image.size)
    if short * MAX_UPSCALE < resolution:
        raise ValueError(f"{image.width}x{image.height} px is too small for resolution {resolution}")
    scale = resolution / short
    size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1.0


def load_images(items: list[Item], resolution: int, log,
                should_stop: Callable[[], bool] = lambda: False):
    """(kept items, their pixels), or None when ``should_stop()`` turns true (asked every 16
    images)."""
    kept, pixels = [], []
    for index, item in enumerate(items):
        if index % 16 == 15 and should_stop():
            return None
        try:
            pixels.append(load_square(item.image_path, resolution))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log(f"skipped {item.image_path}: {exc}", "warning")
            continue
        kept.append(item)
    return kept, pixels


@torch.no_grad()
def encode_texts(tokenizer, text_encoder, captions: list[str], device) -> torch.Tensor:
    ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids.to(device)
    return text_encoder(ids)[0]


@torch.no_grad()
def encode_dataset(parts, items: list[Item], pixels: list[torch.Tensor], device,
                   should_stop: Callable[[], bool], chunk: int = 8) -> CachedData | None:
    """Latents (the VAE posterior's mean) and embeddings, ``chunk`` images at a time; None when
    ``should_stop()`` turns true between chunks."""
    latents, embeddings = [], []
    scale = parts.vae.config.scaling_factor
    for start in range(0, len(items), chunk):
        if should_stop():
            return None
        batch = torch.stack(pixels[start:start + chunk]).to(device)
        latents.append(parts.vae.encode(batch).latent_dist.mean * scale)
        captions = [item.caption for item in items[start:start + chunk]]
        embeddings.append(encode_texts(parts.tokenizer, parts.text_encoder, captions, device))
    return CachedData(torch.cat(latents), torch.cat(embeddings))


def epoch_batches(size: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch as index batches; the last incomplete batch is dropped (each epoch
    shuffles anew, so every image is still seen), unless the dataset is smaller than a batch."""
    order = torch.randperm(size, generator=generator)
    if size < batch_size:
        return [order]
    return [order[i:i + batch_size] for i in range(0, size - batch_size + 1, batch_size)]


def steps_per_epoch(size: int, batch_size: int) -> int:
    return max(1, size // batch_size)
