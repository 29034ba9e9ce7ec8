"""The dataset library: ``<workspace>/datasets/<name>/`` (writable) and each OTWEB_DATA_ROOTS folder's
sub-folders (read-only). A dataset is a folder of images with their captions beside them
(``a.png`` + ``a.txt``): what a OneTrainer concept's ``path`` names.

A writable dataset's key is its name; a read-only one's is ``<root number>~<sub-folder>`` (a name
never holds ``~``). Create, rename and delete only touch the writable ones; delete and rename are
refused while a queued or running run's concepts read the folder.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from webapp.settings import DATASETS_FOLDER

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
HISTOGRAM = ((0, "< 512"), (512, "512-767"), (768, "768-1023"), (1024, "1024-1535"), (1536, "1536+"))


class DatasetError(Exception):
    """A refusal with its HTTP status (the API answers it as {"error", "detail"})."""

    def __init__(self, status: int, error: str, detail=None):
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


@dataclass(frozen=True)
class Dataset:
    key: str
    name: str
    folder: Path
    writable: bool
    source: str          # "library" or the data root's path

    def as_json(self) -> dict:
        return {"key": self.key, "name": self.name, "writable": self.writable, "source": self.source,
                "path": str(self.folder)}


class Library:
    def __init__(self, workspace, data_roots=()):
        self.root = Path(workspace) / DATASETS_FOLDER
        self.data_roots = [Path(root) for root in data_roots]

    def entries(self) -> list[Dataset]:
        found = [Dataset(p.name, p.name, p, True, "library") for p in _folders(self.root)]
        for number, root in enumerate(self.data_roots, 1):
            found += [Dataset(f"{number}~{p.name}", p.name, p, False, str(root)) for p in _folders(root)]
        return found

    def get(self, key: str) -> Dataset:
        if "~" in key:
            number, _, sub = key.partition("~")
            if number.isdigit() and 0 < int(number) <= len(self.data_roots) and NAME.match(sub):
                folder = self.data_roots[int(number) - 1] / sub
                if folder.is_dir() and not folder.is_symlink():
                    return Dataset(key, sub, folder, False, str(self.data_roots[int(number) - 1]))
        elif NAME.match(key) and (self.root / key).is_dir() and not (self.root / key).is_symlink():
            return Dataset(key, key, self.root / key, True, "library")
        raise DatasetError(404, "unknown dataset", f"no dataset is called {key!r}")

    def writable(self, key: str) -> Dataset:
        dataset = self.get(key)
        if not dataset.writable:
            raise DatasetError(403, "read-only dataset", f"{key!r} is in a data root: it is read here, never written")
        return dataset

    def create(self, name: str) -> Dataset:
        self._check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            (self.root / name).mkdir()
        except FileExistsError:
            raise DatasetError(409, "dataset exists", f"a dataset is already called {name!r}") from None
        return self.get(name)

    def rename(self, key: str, new_name: str, users: list) -> Dataset:
        dataset = self.writable(key)
        self._check_name(new_name)
        _refuse_in_use(dataset, users, "renamed")
        if (self.root / new_name).exists():
            raise DatasetError(409, "dataset exists", f"a dataset is already called {new_name!r}")
        os.rename(dataset.folder, self.root / new_name)
        return self.get(new_name)

    def delete(self, key: str, users: list) -> None:
        dataset = self.writable(key)
        _refuse_in_use(dataset, users, "deleted")
        # renamed aside first: a half-deleted folder is never seen as a dataset
        doomed = self.root / f".deleting-{dataset.name}-{time.time_ns()}"
        os.rename(dataset.folder, doomed)
        shutil.rmtree(doomed, ignore_errors=True)

    def bytes_used(self) -> int:
        return sum(folder_bytes(dataset.folder) for dataset in self.entries() if dataset.writable)

    @staticmethod
    def _check_name(name) -> None:
        if not isinstance(name, str) or not NAME.match(name):
            raise DatasetError(400, "invalid dataset name", [{"field": "name", "message": NAME_RULE}])


def _refuse_in_use(dataset: Dataset, users: list, what: str) -> None:
    active = [run for run in users if run.get("state") in ("queued", "running")]
    if active:
        names = ", ".join(f"#{run['id']} ({run['state']})" for run in active)
        raise DatasetError(409, "dataset in use", f"{dataset.name!r} cannot be {what} while runs use it: {names}")


def _folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                      and not p.name.startswith(".") and NAME.match(p.name))
    except OSError:
        return []


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:
                pass
    return total


def stats(index) -> dict:
    """The library's figures for one dataset, from its index (index.py)."""
    images = index.images
    histogram = {label: 0 for _, label in HISTOGRAM}
    for image in images:
        if image.readable:
            side = max(image.width, image.height)
            histogram[[label for low, label in HISTOGRAM if side >= low][-1]] += 1
    captioned = sum(1 for image in images if image.caption is not None)
    newest = max((image.mtime_ns for image in images), default=0)
    return {"images": len(images), "bytes": sum(i.size for i in images) + index.other_bytes,
            "captioned": captioned, "coverage": round(captioned / len(images), 3) if images else 0.0,
            "unreadable": sum(1 for image in images if not image.readable),
            "histogram": histogram, "newest_change": max(newest, index.mtime_ns) / 1e9 if images else None}


def uses(dataset: Dataset, configs: list[tuple[str, dict]], runs: list[dict], readable) -> dict:
    """Which configs and runs name the dataset's folder in a concept. ``readable(path)``: the
    path resolved as the config checker resolves it (None when outside the read roots)."""
    real = os.path.realpath(dataset.folder)

    def names_it(config: dict) -> bool:
        for concept in config.get("concepts") or []:
            if isinstance(concept, dict) and isinstance(concept.get("path"), str):
                folder = readable(concept["path"])
                if folder is not None and os.path.realpath(folder) == real:
                    return True
        return False

    return {"configs": [name for name, config in configs if names_it(config)],
            "runs": [run for run in runs if names_it(run["config"])]}
