"""Concept folders → items, and how many times each item appears in an epoch (balancing).

An item is one image of one enabled concept, with its caption candidates and its size (read
from the header only). Images that cannot be read, or whose short side is under a quarter of the
smallest resolution, are skipped with a warning naming the file.

Balancing (OneTrainer's): REPEATS r = every item r times an epoch (the fraction of r as that
share of the items, drawn anew each epoch); SAMPLES n = n items an epoch from the concept,
cycling through it in a fresh random order.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from webapp.config import confined

from webapp.trainer.builtin.captions import read_caption, read_text_lines

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_UPSCALE = 4


@dataclass
class Item:
    image_path: Path
    concept_index: int
    captions: list[str]
    width: int
    height: int
    mtime_ns: int
    file_size: int
    roots: tuple | None = None      # the read roots every open of the image is checked against

    @property
    def caption(self) -> str:
        return self.captions[0]


def image_files(folder: Path, recursive: bool, roots=None, log: Callable[..., None] | None = None) -> list[Path]:
    """The folder's images, listed through the folder as opened (``confined.walk``: checked
    against ``roots`` when it is opened, so a folder swapped for a link after the worker's check
    is never listed). A symlinked image is left out with a warning."""
    found = []
    for where, names, links, _cut in confined.walk(folder, roots, recursive):
        found += [Path(where, name) for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
        for name in (name for name in links if Path(name).suffix.lower() in IMAGE_SUFFIXES and log):
            log(f"skipped {Path(where, name)}: {confined.SYMLINKED}", "warning")
    return sorted(found)


def probe(path: Path, min_side: int, roots=None) -> tuple[int, int]:
    """The image's size; OSError/ValueError when unreadable, truncated or tiny. The pixels are
    decoded once here (JPEGs at a fraction of their size), so that a broken file is skipped
    before training rather than failing the run at the step that first reads it."""
    with confined.open_file(path, roots) as handle:
        info = os.fstat(handle.fileno())
        if info.st_size == 0:
            raise ValueError("the file is empty")
        with Image.open(handle) as image:
            width, height = image.size
            image.draft("RGB", (min(width, 64), min(height, 64)))
            image.load()
    if min(width, height) * MAX_UPSCALE < min_side:
        raise ValueError(f"{width}x{height} px is too small for resolution {min_side}")
    return width, height, info


def find_items(concepts: list, min_resolution: int, log: Callable[..., None],
               should_stop: Callable[[], bool] = lambda: False, skipped: list | None = None,
               roots=None) -> list[Item] | None:
    """Items of every concept, in a stable order; None when ``should_stop()`` turns true. A file
    that cannot be used is logged (one warning each) and added to ``skipped``. ``roots``: the
    folders this run may read; each folder and file is checked against them as it is opened
    (confined.Refused for a concept folder outside them)."""
    items, skipped = [], skipped if skipped is not None else []
    for index, concept in enumerate(concepts):
        folder = Path(concept.path)
        if not folder.is_dir():
            raise FileNotFoundError(f"concept folder not found: {folder}")
        lines = read_text_lines(Path(concept.prompt_path), roots) if concept.prompt_source == "concept" else None
        for count, path in enumerate(image_files(folder, concept.include_subdirectories, roots, log)):
            if count % 32 == 31 and should_stop():
                return None
            try:
                width, height, stat = probe(path, min_resolution, roots)
                captions = read_caption(path, concept, lines, roots)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                log(f"skipped {path}: {exc}", "warning")
                skipped.append(path)
                continue
            items.append(Item(path, index, captions, width, height, stat.st_mtime_ns, stat.st_size, roots))
    return items


def epoch_items(items: list[Item], concepts: list, rng: random.Random) -> list[int]:
    """Indices into ``items`` for one epoch after balancing (not yet shuffled into batches)."""
    chosen: list[int] = []
    for index, concept in enumerate(concepts):
        members = [i for i, item in enumerate(items) if item.concept_index == index]
        if not members:
            continue
        if concept.balancing_strategy == "SAMPLES":
            chosen += _cycle(members, int(round(concept.balancing)), rng)
        else:
            whole, fraction = math.modf(concept.balancing)[::-1]
            chosen += members * int(whole)
            chosen += rng.sample(members, int(round(fraction * len(members))))
    return chosen


def _cycle(members: list[int], count: int, rng: random.Random) -> list[int]:
    picked: list[int] = []
    while len(picked) < count:
        order = members[:]
        rng.shuffle(order)
        picked += order[:count - len(picked)]
    return picked
