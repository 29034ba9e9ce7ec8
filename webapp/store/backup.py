"""Online backup of a workspace's record, and its restore into an empty workspace.

``backup``: the database through SQLite's online backup API, page by page from one read snapshot
(under WAL a reader never blocks the recorder, and holding the snapshot keeps the steps from
restarting when the recorder commits meanwhile), then every file of the run folders, copied (a file
that gets rewritten must not be shared by a hard link) and hashed as it is copied, then a manifest
(JSON: each file's path, size and sha256, and the database's) written last: a folder without one is
not a backup. ``restore``: into an empty workspace only, every file checked against the manifest
as it is copied; nothing is put in place unless all of it matches.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

MANIFEST = "manifest.json"
DATABASE = "otweb.sqlite3"
RUNS = "runs"
PAGES_PER_STEP = 1024  # 4 MB per step of the online backup
CHUNK = 1 << 20
FORMAT = 1


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why."""


def backup(workspace: Path, dest: Path, progress=None) -> dict:
    """A consistent copy of ``workspace``'s record into ``dest`` (missing or empty); the manifest."""
    workspace, dest = Path(workspace), Path(dest)
    source = workspace / DATABASE
    if not source.is_file():
        raise BackupError(f"no record to back up: {source} does not exist")
    _refuse_non_empty(dest, "backup destination")
    if (workspace / RUNS).resolve() in (dest.resolve(), *dest.resolve().parents):
        raise BackupError(f"the backup destination {dest} is inside the run folders it copies")
    dest.mkdir(parents=True, exist_ok=True)
    started = time.time()
    database = _copy_database(source, dest / DATABASE)
    files = [entry for entry in _copy_tree(workspace / RUNS, dest / RUNS, progress)]
    manifest = {"format": FORMAT, "made_at": started, "took_s": round(time.time() - started, 3),
                "workspace": str(workspace), "database": database, "files": files}
    _write_atomically(dest / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest


def restore(src: Path, workspace: Path) -> dict:
    """The backup in ``src`` into ``workspace`` (missing or empty), every sha256 checked; the manifest."""
    src, workspace = Path(src), Path(workspace)
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} is not a complete backup (no readable {MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{src}: backup format {manifest.get('format')!r} is not {FORMAT}")
    _refuse_non_empty(workspace, "workspace to restore into")
    workspace.mkdir(parents=True, exist_ok=True)
    staging = workspace / ".restoring"
    try:
        _restore_file(src, staging, {**manifest["database"], "path": DATABASE})
        for entry in manifest["files"]:
            _restore_file(src, staging, entry)
        _check_database(staging / DATABASE)
        for name in os.listdir(staging):
            os.replace(staging / name, workspace / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _refuse_non_empty(folder: Path, what: str) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BackupError(f"the {what} {folder} is not empty: give a new or empty folder")


def _copy_database(source: Path, target: Path) -> dict:
    part = target.with_name(target.name + ".part")
    reader = sqlite3.connect(source, isolation_level=None, timeout=30)
    writer = sqlite3.connect(part)
    try:
        reader.execute("BEGIN")  # one snapshot for every step: the copy is the record at one moment
        reader.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        reader.backup(writer, pages=PAGES_PER_STEP, sleep=0.001)
        reader.execute("COMMIT")
        writer.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        reader.close()
        writer.close()
    os.replace(part, target)
    size, digest = _hash_file(target)
    return {"path": DATABASE, "size": size, "sha256": digest}


def _copy_tree(folder: Path, target: Path, progress=None):
    """Each regular file under ``folder`` copied and hashed as it is read: its manifest entry.
    Symlinks are not followed (a run folder holds none of its own); a file removed meanwhile is
    left out."""
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            relative = path.relative_to(folder.parent).as_posix()
            if path.is_symlink() or not path.is_file():
                continue
            try:
                size, digest = _copy_file(path, target.parent / relative)
            except FileNotFoundError:
                continue
            if progress:
                progress(relative, size)
            yield {"path": relative, "size": size, "sha256": digest}


def _copy_file(source: Path, target: Path) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with open(part, "wb") as out:
        size, digest = _hash_file(source, out.write)
    os.replace(part, target)
    return size, digest


def _hash_file(path: Path, sink=None) -> tuple[int, str]:
    """(size, sha256) of a file, read once; each chunk also handed to ``sink`` (a copy's write)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink:
                sink(chunk)
    return size, digest.hexdigest()


def _restore_file(src: Path, staging: Path, entry: dict) -> None:
    relative = Path(entry["path"])
    if relative.is_absolute() or ".." in relative.parts:
        raise BackupError(f"the manifest names a path outside the backup: {entry['path']!r}")
    try:
        size, digest = _copy_file(src / relative, staging / relative)
    except FileNotFoundError:
        raise BackupError(f"{src / relative} is missing from the backup") from None
    if (size, digest) != (entry["size"], entry["sha256"]):
        raise BackupError(f"{src / relative} does not match the manifest (sha256 {digest}, "
                          f"{size} bytes; the manifest says {entry['sha256']}, {entry['size']} bytes)")


def _check_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        conn.close()
    if verdict != "ok":
        raise BackupError(f"the backed-up record does not check: {verdict}")


def _write_atomically(path: Path, data: bytes) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, path)
