"""Small copies of sample images for the grids, made with Pillow on first request and cached
next to the samples (``<run folder>/samples/.thumbs/<id>-<size>.png``), written atomically."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

SIZES = (128, 256)
FOLDER = Path("samples") / ".thumbs"


def thumbnail(run_dir: Path, image: Path, sample_id: int, size: int) -> Path:
    """The cached thumbnail of ``image`` (at most ``size`` pixels a side); made when missing or
    older than the image."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    path = run_dir / FOLDER / f"{sample_id}-{size}.png"
    if path.is_file() and path.stat().st_mtime >= image.stat().st_mtime:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with Image.open(image) as source:
        copy = source.convert("RGB")
        # small images are scaled up too, with no smoothing, so a 64 px sample stays crisp
        if max(copy.size) < size:
            factor = size // max(copy.size)
            copy = copy.resize((copy.width * factor, copy.height * factor), Image.NEAREST)
        else:
            copy.thumbnail((size, size), Image.LANCZOS)
        copy.save(temp, format="PNG", optimize=True)
    os.replace(temp, path)
    return path
