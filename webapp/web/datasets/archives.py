"""An uploaded archive (.zip, .tar, .tar.gz) unpacked safely: every entry is checked before
anything is written. An entry that escapes (``..``, an absolute name, a drive letter), a link or
a device refuses the whole archive (400); contents larger than the room left in the dataset
refuse it (413), and contents more than ``max_ratio`` times the archive's own size refuse it as a
bomb (400). Extraction then copies each entry with its declared size as a hard cap (a zip's
declared size can lie)."""
from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from webapp.web.datasets.library import DatasetError

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_ENTRIES = 100_000


def is_archive(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def safe_name(name: str) -> str | None:
    """The entry's name as a relative '/'-path, or None when it escapes."""
    text = name.replace("\\", "/")
    if not text or "\0" in text or text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        return None
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        return None
    return "/".join(parts)


def _zip_entries(archive: zipfile.ZipFile) -> list[tuple[str, int, object]]:
    found = []
    for info in archive.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise _unsafe(info.filename, "a symbolic link")
        if info.is_dir():
            continue
        found.append((info.filename, info.file_size, info))
    return found


def _tar_entries(archive: tarfile.TarFile, limit: int) -> list[tuple[str, int, object]]:
    found, total = [], 0
    for member in archive:  # a .tar.gz is read as it goes: stop as soon as the sizes are past the limit
        if member.issym() or member.islnk():
            raise _unsafe(member.name, "a link")
        if member.isdir():
            continue
        if not member.isfile():
            raise _unsafe(member.name, "a device or special file")
        total += member.size
        if total > limit:
            raise _too_big(total, limit)
        found.append((member.name, member.size, member))
        if len(found) > MAX_ENTRIES:
            raise DatasetError(400, "archive refused", f"more than {MAX_ENTRIES} entries")
    return found


def _unsafe(name: str, why: str) -> DatasetError:
    return DatasetError(400, "archive refused", f"entry {name[:200]!r} is {why}; nothing was extracted")


def _too_big(total: int, limit: int) -> DatasetError:
    return DatasetError(413, "archive too large",
                        f"its contents are {total / 1e6:.1f} MB; the dataset has room for {limit / 1e6:.1f} MB")


def check(entries: list, archive_bytes: int, limit: int, max_ratio: float) -> list[tuple[str, int, object]]:
    """The entries with safe names, or a DatasetError before anything is written."""
    checked, total = [], 0
    for name, size, handle in entries:
        rel = safe_name(name)
        if rel is None:
            raise _unsafe(name, "outside the dataset's folder (absolute, or with '..')")
        total += size
        checked.append((rel, size, handle))
    if total > limit:
        raise _too_big(total, limit)
    if total > max(archive_bytes, 1) * max_ratio:
        raise DatasetError(400, "archive refused", f"its contents ({total / 1e6:.1f} MB) are more than {max_ratio:g} "
                                                   f"times its size ({archive_bytes / 1e6:.3f} MB): a compression bomb")
    if len(checked) > MAX_ENTRIES:
        raise DatasetError(400, "archive refused", f"more than {MAX_ENTRIES} entries")
    return checked


def extract(path: Path, name: str, staging: Path, limit: int, max_ratio: float) -> list[str]:
    """Every file of the archive under ``staging``; their relative paths. ``name``: the archive's
    own name, which says its kind (the part file it arrived in has none)."""
    archive_bytes = path.stat().st_size
    try:
        if name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                entries = check(_zip_entries(archive), archive_bytes, limit, max_ratio)
                return [_write(staging, rel, size, archive.open(handle)) for rel, size, handle in entries]
        with tarfile.open(path, "r:*") as archive:
            entries = check(_tar_entries(archive, limit), archive_bytes, limit, max_ratio)
        with tarfile.open(path, "r:*") as archive:  # again, from the start: a .tar.gz cannot seek back cheaply
            names = {handle.name: (rel, size) for rel, size, handle in entries}
            written = []
            for member in archive:
                if member.isfile() and member.name in names:
                    rel, size = names.pop(member.name)
                    written.append(_write(staging, rel, size, archive.extractfile(member)))
            return written
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
        raise DatasetError(400, "unreadable archive", f"{name}: {type(exc).__name__}") from None


def _write(staging: Path, rel: str, size: int, source) -> str:
    target = staging / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    with source, open(target, "wb") as out:
        copied = _copy_capped(source, out, size)
    if copied > size:
        raise DatasetError(400, "archive refused", f"entry {rel!r} is larger than its header says")
    return rel


def _copy_capped(source, out, size: int) -> int:
    copied = 0
    while copied <= size:
        block = source.read(min(1 << 20, size + 1 - copied))
        if not block:
            break
        out.write(block)
        copied += len(block)
    return copied

