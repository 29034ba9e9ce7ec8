"""The worker's cache of the files of datasets sent to it, by content: ``blobs/<sha256[:2]>/<sha256>``
under ``<worker folder>/dataset-cache/``. A run's concept folder is materialised from it as copies
in ``runs/<run id>/<concept>/``, removed when the run ends. Not hard links: the trainer refuses a
file with more than one link (config/confined.py: a link could name a file outside the read roots);
``shutil.copyfile`` uses the kernel's copy (a reflink where the filesystem has them).

Bounded by OTWEB_DATASET_CACHE_MB: when a delivery leaves it over the cap, the least recently used
files go first (a blob's mtime is set each time a run uses it), never one a run in progress holds
(``in-use/<run id>.json`` lists them while it runs, written before the eviction looks)."""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from webapp.eventlog import ChunkWriter, UploadError, confined


class DatasetCache:
    def __init__(self, folder: Path, cap_bytes: int):
        self.folder, self.cap_bytes = Path(folder), cap_bytes
        self.blobs, self.incoming, self.in_use = self.folder / "blobs", self.folder / "incoming", self.folder / "in-use"
        self.runs = self.folder / "runs"
        self.writer = ChunkWriter(max_bytes=1 << 62)  # each file's size is the manifest's, checked per chunk

    def blob(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise UploadError(f"refused a file named by {sha256!r}: not a sha256")
        return self.blobs / sha256[:2] / sha256

    def missing(self, sha256s) -> list[str]:
        """Of these, the ones not here (each once, in the order given)."""
        return [sha for sha in dict.fromkeys(sha256s) if not self.blob(sha).is_file()]

    def receive(self, chunk: dict, sha256: str, size: int) -> bool:
        """One chunk of the file ``sha256`` (``size`` bytes, both from the manifest, whatever the chunk
        says); True when the file is whole, checked and in the cache. UploadError when refused (a
        corrupted or misplaced chunk: the partial file is dropped)."""
        target = self.blob(sha256)
        try:
            done = self.writer.write(self.incoming, {**chunk, "path": sha256, "mode": "whole",
                                                     "sha256": sha256, "size": size})
        except UploadError:
            (self.incoming / f".{sha256}.upload").unlink(missing_ok=True)  # nothing of it stays
            raise
        if done is None:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(confined(self.incoming, sha256), target)
        return True

    def hold(self, run_id: int, sha256s) -> None:
        """These files are in use by the run until ``release``: never evicted meanwhile."""
        self.in_use.mkdir(parents=True, exist_ok=True)
        temp = self.in_use / f".{run_id}.tmp"
        temp.write_text(json.dumps(sorted(set(sha256s))))
        os.replace(temp, self.in_use / f"{run_id}.json")

    def release(self, run_id: int) -> None:
        (self.in_use / f"{run_id}.json").unlink(missing_ok=True)
        shutil.rmtree(self.runs / str(run_id), ignore_errors=True)

    def held(self) -> set[str]:
        found: set[str] = set()
        for path in self.in_use.glob("*.json") if self.in_use.is_dir() else []:
            try:
                found.update(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return found

    def materialise(self, run_id: int, concept: int, files: dict) -> Path:
        """The concept's folder for the run: each file (relative path -> [size, sha256]) copied from
        the cache; the blobs' use time set now (least recently used goes first)."""
        folder = self.runs / str(run_id) / str(concept)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        now = time.time()
        for relative, (_size, sha256) in files.items():
            target, blob = confined(folder, relative), self.blob(sha256)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(blob, target)
            os.utime(blob, (now, now))
        return folder

    def size(self) -> int:
        return sum(path.stat().st_size for path in self._blobs())

    def evict(self) -> list[str]:
        """Least recently used first until the cache is within its cap; files a run holds stay.
        Returns the sha256s removed."""
        blobs = [(path.stat().st_mtime, path.stat().st_size, path) for path in self._blobs()]
        total, held, removed = sum(size for _, size, _ in blobs), self.held(), []
        for _mtime, size, path in sorted(blobs):
            if total <= self.cap_bytes:
                break
            if path.name in held:
                continue
            path.unlink(missing_ok=True)
            total -= size
            removed.append(path.name)
        return removed

    def _blobs(self):
        return (p for p in self.blobs.glob("*/*") if p.is_file()) if self.blobs.is_dir() else iter(())
