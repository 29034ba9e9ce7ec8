"""What a run folder holds to download (backups, saves, the final output), their sha256 kept in a
sidecar, and a folder streamed as a zip.

A file is found by (run id, kind, name) in a listing of the run folder, never by a path from the
request. Checksums are computed once and kept in a sidecar (outputs can be GBs), keyed by size and
mtime so a changed file is summed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zipfile
from pathlib import Path

from flask import current_app

from webapp import store
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db

KINDS = ("output", "save", "backup")
CHUNK = 1 << 20
SIDECAR = ".checksums.json"
STEP = re.compile(r"step(\d+)")


def run_dir(run_id: int) -> Path:
    return current_app.config["SETTINGS"].run_dir(run_id).resolve()


def run_files(folder: Path, output_path: str | None = None) -> list[dict]:
    """What a run folder holds to download: backups (folders), saves, the final output."""
    files = []
    backups, saves = folder / "backups", folder / "saves"
    if backups.is_dir():
        for entry in sorted(backups.iterdir()):
            if entry.is_dir() and not entry.name.startswith("."):
                files.append(_entry("backup", entry, sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())))
    if saves.is_dir():
        for entry in sorted(saves.iterdir()):
            if entry.is_file() and not entry.name.startswith("."):
                files.append(_entry("save", entry, entry.stat().st_size))
    if output_path:
        path = Path(output_path).resolve()
        if folder in path.parents and path.is_file():
            files.append(_entry("output", path, path.stat().st_size))
    return files


def _entry(kind: str, path: Path, size: int) -> dict:
    match = STEP.search(path.name)
    return {"kind": kind, "name": path.name, "path": path, "size": size,
            "step": int(match.group(1)) if match else None, "mtime": path.stat().st_mtime}


def find_file(run_id: int, kind: str, name: str) -> tuple[dict, dict]:
    run = store.get_run(get_db(), run_id)
    if run is None:
        raise ApiError(404, "unknown run", f"no run with id {run_id}")
    if kind not in KINDS:
        raise ApiError(404, "unknown kind", f"kind must be one of {', '.join(KINDS)}")
    for entry in run_files(run_dir(run_id), run["output_path"]):
        if entry["kind"] == kind and entry["name"] == name:
            return run, entry
    raise ApiError(404, "no such file", f"run {run_id} has no {kind} named {name!r}")


# -- checksums -----------------------------------------------------------------------------

def cached_sha256(folder: Path, entry: dict) -> str:
    sidecar = folder / SIDECAR
    try:
        cache = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        cache = {}
    key = f"{entry['kind']}/{entry['name']}"
    stamp = [entry["size"], entry["mtime"]]
    if cache.get(key, {}).get("stamp") == stamp:
        return cache[key]["sha256"]
    digest = hashlib.sha256()
    chunks = zip_stream(entry["path"]) if entry["kind"] == "backup" else _file_chunks(entry["path"])
    for chunk in chunks:
        digest.update(chunk)
    cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    tmp = sidecar.with_name(f"{SIDECAR}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, sidecar)
    return cache[key]["sha256"]


def _file_chunks(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


# -- a folder as a zip, streamed: never whole in memory --------------------------------------

class _Pipe:
    """A write-only, unseekable file for zipfile: what is written waits here until taken."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(folder: Path):
    """The folder's files as a ZIP_STORED archive, chunk by chunk. Deterministic for unchanged
    files (sorted names, their mtimes), so its sha256 is stable."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(),
                                   date_time=time.localtime(max(path.stat().st_mtime, 315532800))[:6])
            info.file_size = path.stat().st_size
            with open(path, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    yield pipe.take()
            yield pipe.take()
    yield pipe.take()
