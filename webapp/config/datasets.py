"""What a concept's image folder holds, for the concepts editor: images, captions, thumbnails.

Only names and sizes are read here (no image library: the web side needs none). The image types
are the ones the built-in trainer reads (webapp/trainer/builtin/concepts.py, which imports torch
and so cannot be imported from here).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from webapp.config.loading import resolve

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_SCAN = 50_000      # files looked at in one folder tree: a page must not hang on a huge share
THUMBNAILS = 4


@dataclass
class FolderStats:
    path: str                      # resolved, as shown
    exists: bool = False
    images: int = 0
    captioned: int = 0
    truncated: bool = False        # more files than were scanned
    thumbnails: list[int] = field(default_factory=list)  # indexes into image_files(...)


def image_files(folder: Path, recursive: bool) -> tuple[list[Path], bool]:
    """The folder's images, sorted, and whether the scan stopped at MAX_SCAN files."""
    found, scanned = [], 0
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, dirs, names in walker:
        dirs.sort()
        for name in sorted(names):
            scanned += 1
            if scanned > MAX_SCAN:
                return sorted(found), True
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(root) / name)
    return sorted(found), False


def concept_folder(concept: dict, base_dir: Path) -> Path | None:
    path = concept.get("path") if isinstance(concept, dict) else None
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        return None
    return resolve(path, base_dir)


def folder_stats(concept: dict, base_dir: Path) -> FolderStats:
    folder = concept_folder(concept, base_dir)
    stats = FolderStats(str(folder) if folder else "")
    if folder is None or not folder.is_dir():
        return stats
    try:
        images, stats.truncated = image_files(folder, concept.get("include_subdirectories") is True)
    except OSError:
        return stats
    stats.exists, stats.images = True, len(images)
    stats.captioned = _captioned(concept, images, base_dir)
    stats.thumbnails = list(range(min(THUMBNAILS, len(images))))
    return stats


def _captioned(concept: dict, images: list[Path], base_dir: Path) -> int:
    """Images with a caption, by the concept's prompt source (OneTrainer's three)."""
    text = concept.get("text") if isinstance(concept.get("text"), dict) else {}
    source = text.get("prompt_source", "sample")
    if source == "filename":
        return len(images)
    if source == "concept":
        prompt_path = text.get("prompt_path")
        usable = isinstance(prompt_path, str) and prompt_path and "\x00" not in prompt_path
        return len(images) if usable and resolve(prompt_path, base_dir).is_file() else 0
    return sum(1 for image in images if image.with_suffix(".txt").is_file())
