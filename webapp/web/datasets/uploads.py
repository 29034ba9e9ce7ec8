"""Chunked, resumable uploads into a library dataset.

``open`` takes the file list (relative paths and sizes): images, captions and archives are taken,
anything else is listed as skipped; the quotas are checked here, before a byte arrives (413: the
dataset's, 507: all datasets'). Each file then arrives as chunks at their byte offsets into a part
file under ``<workspace>/.dataset-uploads/<id>/``; what arrived is what is on disk, so a client
that lost its connection asks (``state``) and sends only the rest. A file complete is checked
(an image decoded with Pillow's pixel limit, an archive unpacked safely: archives.py) and renamed
into the dataset; a broken image is listed, never stored.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from pathlib import Path

from webapp.config.datasets import IMAGE_SUFFIXES
from webapp.web.datasets import archives
from webapp.web.datasets.index import CAPTION_SUFFIXES, image_size
from webapp.web.datasets.library import Dataset, DatasetError, folder_bytes

AREA = ".dataset-uploads"
MAX_CHUNK = 8 * 1024 * 1024
MAX_FILES = 100_000
MAX_CAPTION = 1024 * 1024
MAX_PART, MAX_DEPTH = 255, 8


def kind_of(rel: str) -> str:
    lower = rel.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        return "image"
    if lower.endswith(CAPTION_SUFFIXES):
        return "caption"
    return "archive" if archives.is_archive(lower) else "skipped"


def checked_path(text) -> str:
    """A file's name inside the dataset, or 400: relative, no '..', no hidden parts."""
    rel = archives.safe_name(text) if isinstance(text, str) else None
    parts = rel.split("/") if rel else []
    if not parts or len(parts) > MAX_DEPTH or any(p.startswith(".") or len(p) > MAX_PART for p in parts):
        raise DatasetError(400, "invalid file name", [{"field": "files", "message": f"{str(text)[:200]!r}: a relative "
                                                       "path inside the dataset (no '..', no hidden parts)"}])
    return rel


def _copy(body, out, length: int) -> int:
    """The body into the part file in blocks of 1 MiB (never a whole chunk in memory)."""
    copied = 0
    while copied < length:
        block = body.read(min(1 << 20, length - copied))
        if not block:
            break
        out.write(block)
        copied += len(block)
    out.flush()
    return copied


class Uploads:
    def __init__(self, workspace, max_dataset: int, max_total: int, max_ratio: float):
        self.area = Path(workspace) / AREA
        self.max_dataset, self.max_total, self.max_ratio = max_dataset, max_total, max_ratio

    # -- opening -----------------------------------------------------------------------------------
    def open(self, dataset: Dataset, files, library_bytes: int) -> dict:
        taken, skipped = self._listed(files)
        declared = sum(item["size"] for item in taken)
        have = folder_bytes(dataset.folder)
        if have + declared > self.max_dataset:
            raise DatasetError(413, "dataset quota", f"{dataset.name!r} holds {have / 1e6:.1f} MB; this upload adds "
                                                     f"{declared / 1e6:.1f} MB; the limit is {self.max_dataset / 1e6:.1f} MB "
                                                     "(OTWEB_MAX_DATASET_MB)")
        pending = self.pending_bytes()
        if library_bytes + pending + declared > self.max_total:
            raise DatasetError(507, "library quota", f"all datasets hold {library_bytes / 1e6:.1f} MB "
                                                     f"(+{pending / 1e6:.1f} MB arriving); this upload adds {declared / 1e6:.1f} MB; "
                                                     f"the limit is {self.max_total / 1e6:.1f} MB (OTWEB_MAX_DATASETS_MB)")
        upload_id = secrets.token_hex(8)
        (self.area / upload_id).mkdir(parents=True)
        manifest = {"id": upload_id, "dataset": dataset.key, "created": time.time(), "files": taken, "skipped": skipped}
        self._write(self.area / upload_id / "upload.json", manifest)
        return self.state(dataset, upload_id)

    @staticmethod
    def _listed(files) -> tuple[list, list]:
        if not isinstance(files, list) or not files or len(files) > MAX_FILES:
            raise DatasetError(400, "invalid file list", [{"field": "files", "message": f"1 to {MAX_FILES} "
                                                           "{path, size} objects"}])
        taken, skipped, seen = [], [], set()
        for item in files:
            size = item.get("size") if isinstance(item, dict) else None
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise DatasetError(400, "invalid file list", [{"field": "files", "message": "each file needs a size (bytes)"}])
            rel = checked_path(item.get("path"))
            kind = kind_of(rel)
            if kind == "skipped" or rel in seen:
                skipped.append({"path": rel, "why": "not an image, caption or archive" if kind == "skipped" else "listed twice"})
                continue
            seen.add(rel)
            taken.append({"index": len(taken), "path": rel, "size": size, "kind": kind})
        return taken, skipped

    def pending_bytes(self) -> int:
        total = 0
        for folder, manifest in self._manifests():
            total += sum(f["size"] for f in manifest["files"] if not (folder / f"{f['index']}.result.json").exists())
        return total

    # -- chunks --------------------------------------------------------------------------------------
    def state(self, dataset: Dataset, upload_id: str) -> dict:
        manifest = self._load(dataset, upload_id)
        files = [{**item, "received": self._received(upload_id, item), "result": manifest["results"].get(str(item["index"]))}
                 for item in manifest["files"]]
        results = [f["result"] for f in files if f["result"]]
        return {"id": upload_id, "dataset": dataset.key, "chunk_size": MAX_CHUNK, "files": files,
                "skipped": manifest["skipped"] + [s for r in results for s in r.get("skipped", [])],
                "stored": sum(len(r.get("stored", [])) for r in results),
                "broken": [b for r in results for b in r.get("broken", [])],
                "refused": [{"path": f["path"], "why": f["result"]["refused"]} for f in files
                            if f["result"] and f["result"].get("refused")],
                "bytes": sum(f["size"] for f in files), "received": sum(f["received"] for f in files),
                "complete": all(f["result"] for f in files)}

    def put_chunk(self, dataset: Dataset, upload_id: str, index: int, offset: int, body, length: int, background) -> dict:
        """Append ``length`` bytes read from ``body`` at ``offset``. A chunk already there is a
        no-op (a client that resends after a dropped answer); one past what arrived is 409 with
        ``received``. ``background(fn, *args)`` starts the check of a complete file in a real
        thread, not waited for: the next file arrives meanwhile, and ``state`` says when it is done."""
        manifest = self._load(dataset, upload_id, only=index)
        if not 0 <= index < len(manifest["files"]):
            raise DatasetError(404, "unknown file", f"the upload has no file number {index}")
        item = manifest["files"][index]
        received = self._received(upload_id, item)
        if str(index) in manifest["results"] or offset + length <= received:
            return self._file_answer(upload_id, manifest, item)
        if offset != received:
            raise DatasetError(409, "wrong offset", {"received": received, "message": f"send from byte {received}"})
        if length > MAX_CHUNK or offset + length > item["size"]:
            raise DatasetError(400, "chunk too large", f"at most {MAX_CHUNK} bytes, and not past the file's "
                                                       f"declared size ({item['size']})")
        with open(self._part(upload_id, index), "ab") as out:
            try:  # one writer a file: a second request for it (a client retrying too soon) is told to wait
                fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatasetError(409, "file busy", {"received": received, "message": "a chunk of this file is arriving"}) from None
            if os.fstat(out.fileno()).st_size != offset:
                raise DatasetError(409, "wrong offset", {"received": os.fstat(out.fileno()).st_size, "message": "sent twice"})
            try:
                copied = _copy(body, out, length)
            except Exception:  # the connection dropped (werkzeug raises): a chunk arrives whole or not at all
                out.truncate(offset)
                raise
            if copied != length:
                out.truncate(offset)
                raise DatasetError(400, "chunk cut short", "send it again")
            if offset + length == item["size"]:
                # marked first: the part file moves into the dataset while a resent chunk may ask
                (self.area / upload_id / f"{index}.finishing").touch()
        if offset + length == item["size"]:
            background(self._finish_recorded, dataset, upload_id, item)
        return self._file_answer(upload_id, manifest, item)

    def _file_answer(self, upload_id, manifest, item) -> dict:
        return {"index": item["index"], "path": item["path"], "size": item["size"],
                "received": self._received(upload_id, item), "result": manifest["results"].get(str(item["index"]))}

    # -- a complete file into the dataset ---------------------------------------------------------------
    def _finish_recorded(self, dataset: Dataset, upload_id: str, item: dict) -> None:
        """A file of its own per result: files finish at the same time in several threads."""
        try:
            result = self._finish(dataset, upload_id, item)
        except OSError as exc:  # a full disk, a folder removed meanwhile: said, not lost in a thread
            result = {"stored": [], "broken": [], "skipped": [], "refused": f"not stored: {exc.strerror}", "status": 507}
        self._write(self.area / upload_id / f"{item['index']}.result.json", result)
        (self.area / upload_id / f"{item['index']}.finishing").unlink(missing_ok=True)

    def _finish(self, dataset: Dataset, upload_id: str, item: dict) -> dict:
        part = self._part(upload_id, item["index"])
        if item["kind"] != "archive":
            return self._store(dataset, part, item["path"], item["kind"])
        staging = self.area / upload_id / f"x{item['index']}"
        room = max(self.max_dataset - folder_bytes(dataset.folder), 0)
        try:
            names = archives.extract(part, item["path"], staging, room, self.max_ratio)
        except DatasetError as exc:
            return {"stored": [], "broken": [], "skipped": [], "refused": f"{exc.error}: {exc.detail}", "status": exc.status}
        finally:
            part.unlink(missing_ok=True)
        result = {"stored": [], "broken": [], "skipped": []}
        for rel in names:
            kind = kind_of(rel)
            if kind in ("skipped", "archive") or any(p.startswith(".") for p in rel.split("/")):
                result["skipped"].append({"path": rel, "why": "not an image or caption"})
                continue
            for key, values in self._store(dataset, staging / rel, rel, kind).items():
                result[key] += values
        shutil.rmtree(staging, ignore_errors=True)
        return result

    @staticmethod
    def _store(dataset: Dataset, source: Path, rel: str, kind: str) -> dict:
        if kind == "image" and not image_size(str(source))[2]:
            source.unlink(missing_ok=True)
            return {"stored": [], "broken": [{"path": rel, "why": "not a readable image (or more pixels than allowed)"}],
                    "skipped": []}
        if kind == "caption" and source.stat().st_size > MAX_CAPTION:
            source.unlink(missing_ok=True)
            return {"stored": [], "broken": [], "skipped": [{"path": rel, "why": "caption larger than 1 MiB"}]}
        target = dataset.folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        top = os.path.realpath(dataset.folder)
        if os.path.commonpath([top, os.path.realpath(target.parent)]) != top:
            source.unlink(missing_ok=True)
            return {"stored": [], "broken": [], "skipped": [{"path": rel, "why": "outside the dataset's folder"}]}
        os.replace(source, target)
        os.utime(dataset.folder)  # the library's caches look at the folder's modification time
        return {"stored": [rel], "broken": [], "skipped": []}

    # -- the manifest on disk --------------------------------------------------------------------------
    def _part(self, upload_id: str, index: int) -> Path:
        return self.area / upload_id / f"{index}.part"

    def _received(self, upload_id: str, item: dict) -> int:
        try:
            return self._part(upload_id, item["index"]).stat().st_size
        except FileNotFoundError:  # moved into the dataset (or being checked): all of it arrived
            folder, index = self.area / upload_id, item["index"]
            arrived = item.get("done") or (folder / f"{index}.finishing").exists() or (folder / f"{index}.result.json").exists()
            return item["size"] if arrived else 0

    def _load(self, dataset: Dataset, upload_id: str, only: int | None = None) -> dict:
        """The manifest, with the results of every file (or of file ``only``: a chunk's answer
        must not read the results of the 10,000 others)."""
        path = self.area / upload_id / "upload.json" if upload_id.isalnum() and len(upload_id) <= 32 else None
        try:
            manifest = json.loads(path.read_text()) if path else None
        except (OSError, ValueError):
            manifest = None
        if manifest is None or manifest.get("dataset") != dataset.key:
            raise DatasetError(404, "unknown upload", f"no upload {upload_id!r} into {dataset.key!r}")
        manifest["results"] = {}
        found = path.parent.glob("*.result.json") if only is None else [path.parent / f"{only}.result.json"]
        for result in found:
            try:
                manifest["results"][result.name.split(".")[0]] = json.loads(result.read_text())
            except FileNotFoundError:
                continue
        for item in manifest["files"]:
            item["done"] = str(item["index"]) in manifest["results"]
        return manifest

    @staticmethod
    def _write(path: Path, data: dict) -> None:
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, path)

    def _manifests(self):
        try:
            folders = list(self.area.iterdir())
        except OSError:
            return
        for folder in folders:
            try:
                yield folder, json.loads((folder / "upload.json").read_text())
            except (OSError, ValueError):
                continue
