"""An image as training pixels for one bucket: resized to cover it, cropped, maybe flipped.

Which crop and flip is a pure function of a ``random.Random`` the caller seeds, so a variant of
an image is the same pixels every time (the latent cache relies on it).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from webapp.config import confined

JITTER = 0.1  # crop jitter zooms in by up to 10 % and moves the crop anywhere in the overflow


@dataclass(frozen=True)
class Augment:
    flip: bool = False
    zoom: float = 1.0
    x: float = 0.5  # where the crop sits in the overflow: 0 = left/top, 1 = right/bottom
    y: float = 0.5

    def key(self) -> str:
        return f"f{int(self.flip)}z{self.zoom:.6f}x{self.x:.6f}y{self.y:.6f}"


def draw_augment(concept, rng: random.Random) -> Augment:
    flip = concept.random_flip and rng.random() < 0.5
    if not concept.crop_jitter:
        return Augment(flip=flip)
    return Augment(flip=flip, zoom=1.0 + rng.random() * JITTER, x=rng.random(), y=rng.random())


def crop_origin(image_size: tuple[int, int], size: tuple[int, int], augment: Augment) -> tuple[int, int]:
    """(top, left) of the crop in the resized image, as ``load_pixels`` cuts it (without reading
    the file: SDXL's crop conditioning needs it for cached latents too)."""
    (source_width, source_height), (width, height) = image_size, size
    scale = max(width / source_width, height / source_height) * augment.zoom
    resized = (max(width, round(source_width * scale)), max(height, round(source_height * scale)))
    return round((resized[1] - height) * augment.y), round((resized[0] - width) * augment.x)


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB, converted as a person would expect: 16-bit greyscale scaled (a plain convert
    clips it to white), transparency laid over white (a plain convert shows the hidden colours),
    CMYK and the rest through Pillow's conversion."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array * (255.0 / top), 0, 255).astype(np.uint8), "L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def load_pixels(path: Path, size: tuple[int, int], augment: Augment, roots=None) -> torch.Tensor:
    """3 x height x width in [-1, 1]; OSError/ValueError for an image that cannot be read (or
    that is, as opened now, outside ``roots``, a link or hard-linked: confined.open_file)."""
    width, height = size
    with confined.open_file(path, roots) as handle, Image.open(handle) as opened:
        opened.draft("RGB", (width, height))  # JPEG: decode big files at a fraction of their size
        image = to_rgb(ImageOps.exif_transpose(opened))
    scale = max(width / image.width, height / image.height) * augment.zoom
    resized = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(resized, Image.Resampling.BICUBIC)
    left = round((resized[0] - width) * augment.x)
    top = round((resized[1] - height) * augment.y)
    image = image.crop((left, top, left + width, top + height))
    if augment.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1) / 127.5 - 1.0
