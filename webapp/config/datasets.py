"""What a concept's image folder holds, for the concepts editor (images, captions, thumbnails), and
the dataset's fingerprint a run records when it is queued (its model's lineage).

Only names and sizes are read here (no image library: the web side needs none). The image types
are the ones the built-in trainer reads (webapp/trainer/builtin/concepts.py, which imports torch
and so cannot be imported from here).
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from webapp.config import confined, paths

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_SCAN = 50_000      # files looked at in one folder tree: a page must not hang on a huge share
MAX_DEPTH = 8          # folder levels below the concept's folder
MAX_SCAN_S = 3.0       # seconds one scan may take (a slow network share)
MAX_DATASET_FILES = 200_000  # a fingerprint must not hang a start on a huge share
THUMBNAILS = 4


@dataclass
class FolderStats:
    path: str                      # resolved, as shown
    exists: bool = False
    images: int = 0
    captioned: int = 0
    truncated: bool = False        # more files than were scanned (or the scan ran out of time)
    thumbnails: list[int] = field(default_factory=list)  # indexes into image_files(...)
    outside: bool = False          # not inside the read roots: nothing about it is reported
    first_images: list[str] = field(default_factory=list)  # the thumbnails' files


def image_files(folder: Path, recursive: bool, max_depth: int | None = None,
                seconds: float | None = None, captions: set | None = None, roots=None) -> tuple[list[str], bool]:
    """The folder's images (paths as text, sorted), and whether the scan stopped early: at MAX_SCAN
    files, below ``max_depth`` levels, or after ``seconds``. ``captions``: filled with the .txt files
    seen, so that counting captions needs no second look at the disk per image. Plain strings, not
    Path objects: building 50,000 of those was most of a scan's CPU, which it shares (the GIL) with
    the web's event loop. Listed through ``confined.walk``: the folder as opened is checked against
    ``roots`` (confined.Refused otherwise) and symlinked files are left out."""
    found, scanned, cut = [], 0, False
    deadline = time.monotonic() + seconds if seconds else None
    for root, names, _links, cut_here in confined.walk(folder, roots, recursive, max_depth):
        cut = cut or cut_here
        for name in names:
            scanned += 1
            if scanned > MAX_SCAN or (deadline and scanned % 256 == 0 and time.monotonic() > deadline):
                return sorted(found), True
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(os.path.join(root, name))
            elif captions is not None and name.endswith(".txt"):
                captions.add(os.path.join(root, name))
    return sorted(found), cut


def concept_folder(concept: dict, base_dir: Path, roots=None) -> Path | None:
    """The concept's folder, resolved, when it lies inside the read roots (default: the workspace
    and OTWEB_DATA_ROOTS); None otherwise."""
    path = concept.get("path") if isinstance(concept, dict) else None
    return paths.readable(path, base_dir, roots if roots is not None else paths.read_roots(base_dir))


def folder_stats(concept: dict, base_dir: Path, roots=None) -> FolderStats:
    """Blocking file I/O (a bounded walk): the web calls it off the request path (web/configs/scans.py)."""
    roots = roots if roots is not None else paths.read_roots(base_dir)
    folder = concept_folder(concept, base_dir, roots)
    typed = concept.get("path") if isinstance(concept.get("path"), str) else ""
    if folder is None:  # the same answer whether it exists or not
        return FolderStats(typed, outside=bool(typed.strip()))
    stats = FolderStats(str(folder))
    if not folder.is_dir():
        return stats
    captions: set = set()
    try:
        images, stats.truncated = image_files(folder, concept.get("include_subdirectories") is True,
                                              MAX_DEPTH, MAX_SCAN_S, captions, roots)
    except confined.Refused:  # swapped for a link to an outside folder since it was resolved
        return FolderStats(typed, outside=True)
    except OSError:
        return stats
    stats.exists, stats.images = True, len(images)
    stats.captioned = _captioned(concept, images, base_dir, roots, captions)
    stats.thumbnails = list(range(min(THUMBNAILS, len(images))))
    stats.first_images = images[:THUMBNAILS]
    return stats


def _captioned(concept: dict, images: list[str], base_dir: Path, roots, captions: set) -> int:
    """Images with a caption, by the concept's prompt source (OneTrainer's three)."""
    text = concept.get("text") if isinstance(concept.get("text"), dict) else {}
    source = text.get("prompt_source", "sample")
    if source == "filename":
        return len(images)
    if source == "concept":
        prompt_file = paths.readable(text.get("prompt_path"), base_dir, roots)
        return len(images) if prompt_file is not None and prompt_file.is_file() else 0
    return sum(1 for image in images if os.path.splitext(image)[0] + ".txt" in captions)


# -- the dataset a run trained on (model lineage): what was in its folders when it was queued --------

def fingerprint_dataset(config: dict, base_dir: Path) -> dict:
    """Per enabled concept: its folder, file count, total bytes and a sha256 of the sorted list of
    (relative path, size, mtime); and the same over all concepts. Files, not only images: a
    changed caption is a changed dataset."""
    concepts, total = [], hashlib.sha256()
    for concept in config.get("concepts") or []:
        if not isinstance(concept, dict) or concept.get("enabled") is False:
            continue
        folder = concept_folder(concept, base_dir)
        entry = {"path": str(concept.get("path") or ""), "files": 0, "bytes": 0, "sha256": None, "readable": False}
        if folder is not None and folder.is_dir():
            entry.update(_scan(folder, bool(concept.get("include_subdirectories"))))
            total.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
        concepts.append(entry)
    return {"concepts": concepts, "files": sum(c["files"] for c in concepts),
            "bytes": sum(c["bytes"] for c in concepts), "sha256": total.hexdigest() if concepts else None}


def _scan(folder: Path, recursive: bool) -> dict:
    """Through the folder as opened (confined.walk: a swap for a link lists nothing outside); a
    file's stat does not follow a link."""
    listing, top = [], None
    for root, names, _links, _cut in confined.walk(folder, None, recursive):
        top = root if top is None else top  # the folder's real path: the first one walked
        prefix = root[len(top) + 1:] + os.sep if root != top else ""  # not os.path.relpath: it costs more than the stat
        for name in names:
            stat = os.stat(os.path.join(root, name), follow_symlinks=False)
            listing.append((prefix + name, stat.st_size, stat.st_mtime_ns))
            if len(listing) >= MAX_DATASET_FILES:
                break
        if len(listing) >= MAX_DATASET_FILES:
            break
    digest = hashlib.sha256("".join(f"{p}\0{s}\0{m}\n" for p, s, m in listing).encode())
    return {"files": len(listing), "bytes": sum(s for _, s, _ in listing), "sha256": digest.hexdigest(),
            "readable": True, "truncated": len(listing) >= MAX_DATASET_FILES}
