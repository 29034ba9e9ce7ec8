"""What a dataset folder holds, image by image: size, modification time, pixel size, sha256,
whether Pillow can read it, its caption. The grid, its filters and the library's figures all read
this one index.

Building it reads every image's header and hashes every file: seconds of blocking I/O on a big
dataset, so it runs in a real OS thread (scans.Scanner.call: gevent's thread pool under gunicorn),
never on the event loop, and it is cached per folder: a rebuild (the folder's modification time
changed: every write here is a rename into the folder) looks again only at files whose size or
modification time changed.
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field

from PIL import Image

from webapp.config import confined
from webapp.config.datasets import IMAGE_SUFFIXES, MAX_DEPTH
from webapp.web.configs.scans import _real_lock

CAPTION_SUFFIXES = (".txt", ".caption")
MAX_PIXELS = 16384 * 16384          # Pillow's pixel limit for a dataset image (a larger one is "unreadable")
MAX_IMAGES = 200_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass
class ImageFacts:
    rel: str                    # path inside the dataset, '/'-separated
    size: int
    mtime_ns: int
    width: int = 0
    height: int = 0
    sha256: str = ""
    readable: bool = False
    caption: str | None = None  # None: no caption file
    caption_rel: str | None = None


@dataclass
class DatasetIndex:
    folder: str
    mtime_ns: int
    images: list[ImageFacts] = field(default_factory=list)
    other_bytes: int = 0        # captions and anything else in the folder
    built: float = 0.0

    def by_rel(self) -> dict[str, ImageFacts]:
        return {image.rel: image for image in self.images}


def folder_mtime(folder) -> int:
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return 0


def image_size(path: str) -> tuple[int, int, bool]:
    """(width, height, readable): the image decoded whole (a truncated file fails here, not in training)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.width, image.height, True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return 0, 0, False


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_caption(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(1 << 20).decode("utf-8", errors="replace")


def build(folder, previous: DatasetIndex | None = None) -> DatasetIndex:
    """Blocking: call it in a real thread. ``previous``: facts kept for files unchanged since."""
    known = previous.by_rel() if previous is not None else {}
    index = DatasetIndex(str(folder), folder_mtime(folder), built=time.time())
    top = None
    for root, names, _links, _cut in confined.walk(folder, None, True, MAX_DEPTH):
        top = root if top is None else top
        prefix = root[len(top) + 1:].replace(os.sep, "/") + "/" if root != top else ""
        present = set(names)
        for name in names:
            path = os.path.join(root, name)
            stat = os.stat(path, follow_symlinks=False)
            if not name.lower().endswith(IMAGE_SUFFIXES):
                index.other_bytes += stat.st_size
                continue
            if len(index.images) >= MAX_IMAGES:
                continue
            index.images.append(_facts(path, prefix + name, stat, known.get(prefix + name), present))
    index.images.sort(key=lambda image: image.rel)
    return index


def _facts(path: str, rel: str, stat, old: ImageFacts | None, present: set) -> ImageFacts:
    if old is not None and old.size == stat.st_size and old.mtime_ns == stat.st_mtime_ns:
        facts = ImageFacts(**{**old.__dict__, "caption": None, "caption_rel": None})
    else:
        width, height, readable = image_size(path)
        facts = ImageFacts(rel, stat.st_size, stat.st_mtime_ns, width, height, file_sha256(path), readable)
    stem = os.path.splitext(os.path.basename(path))[0]
    for suffix in CAPTION_SUFFIXES:
        if stem + suffix in present:
            facts.caption_rel = rel[: len(rel) - len(os.path.basename(rel))] + stem + suffix
            facts.caption = read_caption(os.path.join(os.path.dirname(path), stem + suffix))
            break
    return facts


class IndexCache:
    """One index per folder, rebuilt when the folder's modification time changes."""

    def __init__(self, scanner, background):
        self.scanner, self.background = scanner, background
        self._lock = _real_lock()
        self._indexes: dict[str, DatasetIndex] = {}
        self._building: set[str] = set()

    def peek(self, folder) -> DatasetIndex | None:
        """For the library's list and the editor's picker: the index as cached (even if the
        folder changed since; a rebuild starts in the background), None before the first build
        ends. Never waits: a list of many large datasets must not hold a page."""
        key = str(folder)
        with self._lock:
            found = self._indexes.get(key)
            start = (found is None or found.mtime_ns != folder_mtime(folder)) and key not in self._building
            if start:
                self._building.add(key)
        if start:
            self.background(self._rebuild, folder, found)
        return found

    def _rebuild(self, folder, previous) -> None:
        try:
            fresh = build(folder, previous)
            with self._lock:
                self._indexes[str(folder)] = fresh
        finally:
            with self._lock:
                self._building.discard(str(folder))

    def get(self, folder) -> DatasetIndex:
        key = str(folder)
        with self._lock:
            found = self._indexes.get(key)
        if found is not None and found.mtime_ns == folder_mtime(folder) and found.mtime_ns:
            return found
        fresh = self.scanner.call(build, folder, found)
        with self._lock:
            self._indexes[key] = fresh
        return fresh

    def forget(self, folder) -> None:
        with self._lock:
            self._indexes.pop(str(folder), None)
