"""The dataset's grid: its images filtered and paged (a page is PAGE_SIZE images whatever the
dataset's size), and their thumbnails, made off the request path (a real thread) and kept on disk
by the image's path, size and modification time."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from webapp.config.paths import CACHE_FOLDER
from webapp.web.datasets.library import Dataset, DatasetError

PAGE_SIZE = 48
THUMB_SIDE = 192
THUMB_FOLDER = "dataset-thumbnails"
MAX_RESOLUTION = 65536
MAX_TEXT = 200


@dataclass
class Filters:
    text: str = ""
    missing: bool = False
    smaller: int = 0          # a side smaller than this many pixels
    duplicates: bool = False
    unreadable: bool = False

    @classmethod
    def from_args(cls, args) -> "Filters":
        smaller = (args.get("smaller") or "").strip()
        if smaller and (not smaller.isdigit() or int(smaller) > MAX_RESOLUTION):
            raise DatasetError(400, "invalid filter", [{"field": "smaller", "message": f"pixels, 0 to {MAX_RESOLUTION}"}])
        text = args.get("text") or ""
        if len(text) > MAX_TEXT:
            raise DatasetError(400, "invalid filter", [{"field": "text", "message": f"at most {MAX_TEXT} characters"}])
        flag = lambda name: (args.get(name) or "") in ("1", "true", "on")  # noqa: E731
        return cls(text.strip(), flag("missing"), int(smaller or 0), flag("duplicates"), flag("unreadable"))

    def query(self) -> dict:
        """As URL query arguments (the pager's links and the bulk forms keep the filters)."""
        found = {"text": self.text, "smaller": self.smaller or "", "missing": "1" if self.missing else "",
                 "duplicates": "1" if self.duplicates else "", "unreadable": "1" if self.unreadable else ""}
        return {key: value for key, value in found.items() if value}


def filtered(images: list, filters: Filters) -> list:
    text = filters.text.lower()
    counts = Counter(image.sha256 for image in images) if filters.duplicates else None
    found = []
    for image in images:
        if text and text not in (image.caption or "").lower():
            continue
        if filters.missing and image.caption is not None:
            continue
        if filters.smaller and not (image.readable and min(image.width, image.height) < filters.smaller):
            continue
        if counts is not None and counts[image.sha256] < 2:
            continue
        if filters.unreadable and image.readable:
            continue
        found.append(image)
    return found


def paged(images: list, number: int) -> tuple[list, int, int]:
    """(the page's images, the page number, how many pages)."""
    pages = max(1, -(-len(images) // PAGE_SIZE))
    number = min(max(number, 1), pages)
    return images[(number - 1) * PAGE_SIZE: number * PAGE_SIZE], number, pages


def thumbnail(workspace, dataset: Dataset, image) -> Path:
    """Blocking (Pillow): call it in a real thread. The cached JPEG, made when missing."""
    key = hashlib.sha256(f"{dataset.folder}\0{image.rel}\0{image.size}\0{image.mtime_ns}".encode()).hexdigest()
    path = Path(workspace) / CACHE_FOLDER / THUMB_FOLDER / key[:2] / f"{key}.jpg"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(dataset.folder / image.rel) as source:
        source.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))  # a JPEG decodes at a fraction of its size
        copy = source.convert("RGB")
        copy.thumbnail((THUMB_SIDE, THUMB_SIDE))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    copy.save(temporary, "JPEG", quality=80)
    os.replace(temporary, path)
    return path
