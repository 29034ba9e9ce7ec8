"""A model version's file on the control plane: found inside its run folder only (a recorded path
that leads outside is treated as gone), measured once (size and sha256 kept in the record, keyed by
size and mtime), streamed for download (a backup folder as a zip), deleted; and the fingerprint of
a run's dataset, taken when the run is queued.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from flask import Response, current_app, send_file

from webapp import store
from webapp.config.datasets import fingerprint_dataset
from webapp.web.errors import ApiError
from webapp.web.extensions import get_db
from webapp.web.runs.files import zip_stream
from webapp.web.configs.scans import gevent_pool, scanner

CHUNK = 1 << 20


def run_folder(run_id: int) -> Path:
    return current_app.config["SETTINGS"].run_dir(run_id).resolve()


def version_path(version: dict) -> Path | None:
    """The version's file or folder, or None when it is gone (or its record points outside)."""
    folder = run_folder(version["run_id"])
    path = (folder / version["path"]).resolve()
    if folder not in path.parents or not path.exists():
        return None
    return path


def _measure(path: Path) -> tuple[int, str]:
    """(size, stamp): a stamp changes when any file of it changes."""
    if path.is_dir():
        files = [f.stat() for f in path.rglob("*") if f.is_file()]
        size = sum(s.st_size for s in files)
        return size, f"{size}:{len(files)}:{max((s.st_mtime_ns for s in files), default=0)}"
    stat = path.stat()
    return stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}"


def file_facts(version: dict, checksum: bool = False) -> dict:
    """{"exists", "size", "sha256"}: the size from the disk, the sha256 from the record while the
    file is unchanged; with ``checksum`` it is computed (once) when missing."""
    path = version_path(version)
    if path is None:
        return {"exists": False, "size": version.get("size"), "sha256": version.get("sha256")}
    size, stamp = _measure(path)
    sha = version.get("sha256") if version.get("file_stamp") == stamp else None
    if sha is None and checksum:
        # once per version and file: a file (GBs, or one a hostile worker made large) is summed in a
        # real thread (gevent's pool), never on the event loop every page and stream share
        pool = gevent_pool()
        sha = pool.apply(_sha256, (path,)) if pool is not None else _sha256(path)
        store.model_versions.set_file_facts(get_db(), version["id"], size, sha, stamp)
    return {"exists": True, "size": size, "sha256": sha}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in zip_stream(path) if path.is_dir() else _chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def _chunks(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


def download_name(version: dict) -> str:
    name = Path(version["path"]).name
    return f"run{version['run_id']}-{name}.zip" if version["kind"] == "backup" else name


def download(version: dict) -> Response:
    path = version_path(version)
    if path is None:
        raise ApiError(410, "file gone", f"model version {version['id']}'s file is no longer in its run folder")
    facts = file_facts(version, checksum=True)
    if path.is_dir():
        response = Response(zip_stream(path), mimetype="application/zip")
        response.headers["Content-Disposition"] = f'attachment; filename="{download_name(version)}"'
    else:
        response = send_file(path, as_attachment=True, download_name=download_name(version), conditional=True)
    response.headers["X-Checksum-SHA256"] = facts["sha256"]
    return response


def delete_file(version: dict) -> bool:
    """Delete the version's file (or backup folder). False when it was gone already."""
    path = version_path(version)
    if path is None:
        return False
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    return True


# -- the dataset a run trained on -------------------------------------------------------------

def record_dataset(run_id: int, config: dict) -> None:
    """When a run is queued: the dataset as it is then. A folder the control plane cannot read
    (a dataset only on a worker's disk) is recorded as unreadable, never an error for the start."""
    try:  # in a real thread: a 100,000-file folder blocked the event loop (every page) for a second
        fingerprint = scanner(current_app).call(fingerprint_dataset, config, current_app.config["WORKSPACE"])
    except OSError as exc:
        fingerprint = {"concepts": [], "files": 0, "bytes": 0, "sha256": None, "error": type(exc).__name__}
    store.model_versions.set_dataset_fingerprint(get_db(), run_id, fingerprint)
