"""A dataset's content manifest: per file its relative path, size and sha256, and the content
fingerprint (a sha256 of the sorted manifest) that changes with any file added, removed or edited.

Shared by the web (a run records the manifest it trained on; the run and model pages say what
changed since; the dispatcher sends a dataset by it) and the worker (its own copy, its cache of
delivered files). Torch-free and Flask-free. Hashing is blocking file I/O: the web calls it off its
event loop (web/configs/scans.Scanner.call, control/dataset_delivery's thread pool).

A sha256 is cached by (path, size, mtime_ns): a rescan of an unchanged 10,000-file folder stats
every file but hashes none. The cache may be kept in a JSON file (written to a temp file, renamed).
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from webapp.config import confined
from webapp.config.datasets import MAX_DATASET_FILES, concept_folder

CAPTION_SUFFIXES = (".txt", ".caption")
READ_BYTES = 1024 * 1024
MAX_CACHED = 400_000          # entries kept (a few hundred bytes each): beyond, the oldest go


class HashCache:
    """(path, size, mtime_ns) -> sha256, shared by threads; ``hashed`` counts the files read."""

    def __init__(self, file: Path | None = None):
        self.file, self.hashed, self._dirty = file, 0, False
        self._lock = threading.Lock()
        self._sums: dict[str, list] = {}
        if file is not None and file.is_file():
            try:
                self._sums = {k: v for k, v in json.loads(file.read_text()).items()
                              if isinstance(v, list) and len(v) == 3}
            except (OSError, ValueError, AttributeError):
                self._sums = {}  # a spoilt cache is only a slower first scan

    def sha256(self, path: str, size: int, mtime_ns: int) -> str:
        with self._lock:
            known = self._sums.get(path)
        if known and known[0] == size and known[1] == mtime_ns:
            return known[2]
        digest = hash_file(path)
        with self._lock:
            self.hashed += 1
            if len(self._sums) >= MAX_CACHED:
                self._sums.pop(next(iter(self._sums)))
            self._sums[path] = [size, mtime_ns, digest]
            self._dirty = True
        return digest

    def save(self) -> None:
        if self.file is None or not self._dirty:
            return
        with self._lock:
            text, self._dirty = json.dumps(self._sums, separators=(",", ":")), False
        self.file.parent.mkdir(parents=True, exist_ok=True)
        temp = self.file.with_name(f".{self.file.name}.{os.getpid()}-{threading.get_ident()}.tmp")  # per writer
        temp.write_text(text)
        os.replace(temp, self.file)


def hash_file(path: str) -> str:
    """sha256 of a file opened without following a link (a file swapped for one is refused)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as fh:
        while block := fh.read(READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(files: dict) -> str:
    """The content fingerprint of ``{relative path: [size, sha256]}``."""
    return hashlib.sha256("".join(f"{rel}\0{size}\0{sha}\n" for rel, (size, sha) in sorted(files.items()))
                          .encode()).hexdigest()


def folder_manifest(folder, recursive: bool, cache: HashCache, roots=None) -> dict:
    """``{"files": {rel: [size, sha256]}, "fingerprint", "count", "bytes", "truncated"}`` of every
    file (not only images: a changed caption is a changed dataset), walked through the folder as
    opened (confined.walk: links left out; ``roots`` checked when given)."""
    files, top, truncated = {}, None, False
    for root, names, _links, _cut in confined.walk(folder, roots, recursive):
        top = root if top is None else top
        prefix = root[len(top) + 1:] + "/" if root != top else ""
        for name in names:
            full = os.path.join(root, name)
            stat = os.stat(full, follow_symlinks=False)
            files[prefix + name] = [stat.st_size, cache.sha256(full, stat.st_size, stat.st_mtime_ns)]
            if len(files) >= MAX_DATASET_FILES:
                truncated = True
                break
        if truncated:
            break
    return {"files": files, "fingerprint": fingerprint(files), "count": len(files),
            "bytes": sum(size for size, _ in files.values()), "truncated": truncated}


def concept_manifests(config: dict, base_dir: Path, cache: HashCache, roots=None) -> list[dict]:
    """Per enabled concept whose folder is readable here (inside the read roots, a folder): its
    index in the config, its path as the config says it, its folder here and its manifest."""
    found = []
    for index, concept in enumerate(config.get("concepts") or []):
        if not isinstance(concept, dict) or concept.get("enabled") is False:
            continue
        folder = concept_folder(concept, base_dir, roots)
        if folder is None or not folder.is_dir():
            continue
        manifest = folder_manifest(folder, concept.get("include_subdirectories") is True, cache, roots)
        found.append({"concept": index, "path": str(concept.get("path") or ""), "folder": str(folder), **manifest})
    cache.save()
    return found


def is_caption(relative: str) -> bool:
    return relative.lower().endswith(CAPTION_SUFFIXES)


def changes(before: dict, now: dict) -> dict:
    """What changed from manifest files ``before`` to ``now``: counts of files added and removed,
    captions changed and other files changed (same name, other content)."""
    added = [rel for rel in now if rel not in before]
    removed = [rel for rel in before if rel not in now]
    edited = [rel for rel in now if rel in before and list(now[rel]) != list(before[rel])]
    captions = sum(1 for rel in edited if is_caption(rel))
    return {"added": len(added), "removed": len(removed), "captions_changed": captions,
            "files_changed": len(edited) - captions}


def describe(change: dict | None) -> str:
    """"3 files added, 1 removed, 5 captions changed"; "unchanged" when nothing did."""
    if change is None:
        return "not readable here"
    parts = [f"{change['added']} file{'s' * (change['added'] != 1)} added" if change["added"] else "",
             f"{change['removed']} removed" if change["removed"] else "",
             f"{change['captions_changed']} caption{'s' * (change['captions_changed'] != 1)} changed"
             if change["captions_changed"] else "",
             f"{change['files_changed']} file{'s' * (change['files_changed'] != 1)} changed"
             if change["files_changed"] else ""]
    return ", ".join(p for p in parts if p) or "unchanged"


def changes_since(recorded: list[dict], config: dict, base_dir: Path, cache: HashCache, roots=None) -> list[dict]:
    """Per recorded concept (store.dataset_manifests.of_run): its path, the files it had and what
    changed since in its folder here (``summary``: words; ``change``: counts, None when the folder
    is not readable here). Blocking: hashes what changed."""
    concepts, found = config.get("concepts") or [], []
    for entry in recorded:
        concept = concepts[entry["concept"]] if entry["concept"] < len(concepts) else {}
        concept = {**(concept if isinstance(concept, dict) else {}), "path": entry["path"]}
        folder = concept_folder(concept, base_dir, roots)
        change = None
        if folder is not None and folder.is_dir():
            now = folder_manifest(folder, concept.get("include_subdirectories") is True, cache, roots)
            change = changes(entry["files"], now["files"])
        found.append({"path": entry["path"], "count": entry["count"], "bytes": entry["bytes"],
                      "fingerprint": entry["fingerprint"], "change": change, "summary": describe(change)})
    cache.save()
    return found
