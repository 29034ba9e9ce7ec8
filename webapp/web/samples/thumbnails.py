"""Small copies of sample images for the grids, made with Pillow on first request and cached
next to the samples (``<run folder>/samples/.thumbs/<id>-<size>.png``), written atomically.

A sample comes from a worker, which a web host does not trust: decoding one is made in a real
thread (gevent's pool under gunicorn), never on the event loop every page and stream shares, and
only after its header says it is no larger than a sample can be (Pillow's pixel limit as well), so
a small file that decodes to gigabytes (a decompression bomb) is refused without being decoded."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from webapp.protocol import SAMPLE_MAX_SIDE
from webapp.web.configs.scans import gevent_pool

SIZES = (128, 256)
FOLDER = Path("samples") / ".thumbs"
Image.MAX_IMAGE_PIXELS = SAMPLE_MAX_SIDE * SAMPLE_MAX_SIDE  # Pillow refuses past twice this
# Pillow imports its format plugins on first use; an import in a pool thread of a gevent-patched
# process can deadlock on the import lock (seen: thumbnails hung in Image.save's preinit), so
# they are all imported here, once, on the main thread
Image.init()


class ImageRefused(ValueError):
    """An image too large (or not one) to make a thumbnail of."""


def thumbnail(run_dir: Path, image: Path, sample_id: int, size: int) -> Path:
    """The cached thumbnail of ``image`` (at most ``size`` pixels a side); made when missing or
    older than the image. ImageRefused for an image larger than any sample may be."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    path = run_dir / FOLDER / f"{sample_id}-{size}.png"
    if path.is_file() and path.stat().st_mtime >= image.stat().st_mtime:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    pool = gevent_pool()
    # this request's greenlet waits; the others go on. A refusal comes back as a value (raised in a
    # pool thread, gevent would print it as a crash)
    made = pool.apply(_made, (image, path, size)) if pool is not None else _made(image, path, size)
    if isinstance(made, ImageRefused):
        raise made
    return made


def _made(image: Path, path: Path, size: int) -> Path | ImageRefused:
    try:
        return _make(image, path, size)
    except ImageRefused as exc:
        return exc


def _make(image: Path, path: Path, size: int) -> Path:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{id(path)}.tmp")
    try:
        with Image.open(image) as source:  # reads the header only
            if source.width > SAMPLE_MAX_SIDE or source.height > SAMPLE_MAX_SIDE:
                raise ImageRefused(f"the image is {source.width}x{source.height} pixels: larger than a sample "
                                   f"can be ({SAMPLE_MAX_SIDE}x{SAMPLE_MAX_SIDE}), not decoded")
            source.draft("RGB", (size, size))  # a JPEG decodes at a fraction of its size
            copy = source.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageRefused(f"the image is larger than a sample can be, not decoded: {exc}") from None
    except (OSError, SyntaxError) as exc:
        raise ImageRefused(f"the image cannot be read: {exc}") from None
    # small images are scaled up too, with no smoothing, so a 64 px sample stays crisp
    if max(copy.size) < size:
        factor = size // max(copy.size)
        copy = copy.resize((copy.width * factor, copy.height * factor), Image.NEAREST)
    else:
        copy.thumbnail((size, size), Image.LANCZOS)
    copy.save(temp, format="PNG", optimize=True)
    os.replace(temp, path)
    return path
