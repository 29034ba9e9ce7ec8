"""What a run folder holds to download (backups, saves, the final output), their sha256 as recorded
at upload (``store.uploads``), and a folder streamed as a zip.

A file is found by (run id, kind, name) in a listing of the run folder, never by a path from the
request. Checksums are the ones the recorder computed as each file's chunks arrived: a request
never reads a file to sum it.
"""
from __future__ import annotations

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


# -- checksums: as recorded when each file's upload completed, never computed on a request ------

def recorded_sha256(run_id: int, folder: Path, entry: dict) -> dict:
    """{"sha256": ...} for a file, {"files": {name: sha256}} for a backup folder (its zip is made on
    the fly; each file inside has its own sum). A sum is None where the record has none for the
    file as it is now (not uploaded by a worker, or changed since): a request never hashes a file,
    which for a multi-GB output, or one a hostile worker made large, would hold the web."""
    recorded = store.uploads.of_run(get_db(), run_id)
    if entry["kind"] == "backup":
        files = sorted(p for p in entry["path"].rglob("*") if p.is_file())
        return {"files": {p.relative_to(entry["path"]).as_posix(): _sum(recorded, folder, p) for p in files}}
    return {"sha256": _sum(recorded, folder, entry["path"])}


def _sum(recorded: dict, folder: Path, path: Path) -> str | None:
    try:
        found = recorded.get(path.relative_to(folder).as_posix())
        return found["sha256"] if found and found["size"] == path.stat().st_size else None
    except (ValueError, OSError):
        return None


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
