"""Where a sample image goes in a run's folder, written once for every backend.

``samples/<default|custom>/<global_step>-<n>.png``, written to a temporary file and renamed, so
the web never serves half an image.
"""
from __future__ import annotations

import os
from pathlib import Path

from webapp.protocol import Event

FOLDERS = {Event.SAMPLE_DEFAULT: "default", Event.SAMPLE_CUSTOM: "custom"}


def save_sample_image(image, run_dir: Path, kind: Event, global_step: int) -> Path:
    """Save a PIL image as the next free ``<global_step>-<n>.png``; returns its path."""
    folder = Path(run_dir) / "samples" / FOLDERS[Event(kind)]
    folder.mkdir(parents=True, exist_ok=True)
    index = 0
    while (folder / f"{global_step}-{index}.png").exists():
        index += 1
    path = folder / f"{global_step}-{index}.png"
    temp = folder / f".{path.name}.tmp"
    try:
        image.save(temp, format="PNG")
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)  # a full disk must not leave half an image behind
        raise
    return path
