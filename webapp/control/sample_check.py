"""A sample image a worker sent, checked when it arrives: no larger than the run could have asked
for. Pillow reads only the header here; its pixel limit is set so that no decode anywhere in the web
(the thumbnails) takes a decompression bomb (a 13000x13000 PNG is 493 KB and 500 MB decoded)."""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from webapp.eventlog import UploadError
from webapp.protocol import SAMPLE_MAX_SIDE

# Pillow refuses (DecompressionBombError) past twice this, and only warns below; both sides check it
Image.MAX_IMAGE_PIXELS = SAMPLE_MAX_SIDE * SAMPLE_MAX_SIDE


def allowed_side(config: dict) -> int:
    """The largest side a sample of this run may have: its resolution, its samples' sizes, or what a
    custom sample may ask for, whichever is largest."""
    sides = [int(n) for n in re.findall(r"\d+", str(config.get("resolution") or ""))]
    for sample in config.get("samples") if isinstance(config.get("samples"), list) else []:
        if isinstance(sample, dict):
            sides += [v for v in (sample.get("width"), sample.get("height")) if isinstance(v, int)]
    return max([SAMPLE_MAX_SIDE, *sides])


def check_sample(path: Path, relative: str, config: dict) -> None:
    """UploadError (and the file removed) when the image is larger than the run allows or unreadable."""
    side = allowed_side(config)
    try:
        with Image.open(path) as image:  # the header only: nothing is decoded
            width, height = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, from the header too
        width = height = None
        why = str(exc).split(",")[0]
    except (OSError, ValueError) as exc:
        path.unlink(missing_ok=True)
        raise UploadError(f"refused the sample {relative}: not an image Pillow reads ({exc})") from None
    else:
        why = f"{width}x{height} pixels"
    if width is None or width > side or height > side:
        path.unlink(missing_ok=True)
        raise UploadError(f"refused the sample {relative}: larger than this run's samples can be "
                          f"({side}x{side}): {why}")
