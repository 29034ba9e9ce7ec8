"""Files read where they are opened: every dataset file a run or a page reads is checked at the
moment it is listed and opened, not only when its config was validated.

A check of the path text (``paths.readable``) happens earlier, and what it judged can change
before the file is read: a file inside an allowed folder can be a symlink to ``/etc``, and a
checked folder can be swapped for a symlink to an outside folder a few milliseconds after the
check. So a folder is opened first and the opened folder's real path (``/proc/self/fd/N``) is
compared with the read roots; it is then listed through that descriptor (a swap of the path
cannot change what is listed), and its sub-folders are opened relative to it without following
symlinks. A file is opened, then its real path is checked the same way. Symlinked files are
never listed (a symlink in a dataset is refused, whatever it points to), and a regular file
with more than one hard link is refused: its other name may lie outside every root, and nothing
on disk says where.

Torch-free and Flask-free: the web (thumbnails, folder figures), the worker and the trainer use it.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from webapp.config import paths

HARD_LINKED = "has more than one hard link (its other name may be outside the folders this server may read)"
SYMLINKED = "is a symbolic link (a dataset's files are read only as they are, never through a link)"


class Refused(OSError):
    """A file or folder that may not be read; the message names what was asked for, never the
    outside path it leads to."""


def _real(fd: int, fallback: str) -> Path:
    link = f"/proc/self/fd/{fd}"
    return Path(os.readlink(link) if os.path.exists(link) else os.path.realpath(fallback))


def _check(fd: int, text: str, roots) -> Path:
    real = _real(fd, text)
    if roots is not None and not paths._inside(real, roots):
        raise Refused(f"{text} {paths.OUTSIDE_READ}")
    return real


def open_fd(path, roots, directory: bool = False) -> int:
    """An open descriptor of ``path`` (a file, or a folder with ``directory``) after checking
    what was opened: inside ``roots`` (None: any place, for callers with no roots), no symlink
    as its last part, and a file with one hard link. Refused (an OSError) otherwise."""
    text = str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_DIRECTORY if directory else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(text, flags)
    except OSError as exc:
        if exc.errno == getattr(os, "ELOOP", None) or (not directory and os.path.islink(text)):
            raise Refused(f"{text} {SYMLINKED}") from None
        raise
    try:
        _check(fd, text, roots)
        info = os.fstat(fd)
        if not directory and stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            raise Refused(f"{text} {HARD_LINKED}")
        if not directory and not stat.S_ISREG(info.st_mode):
            raise Refused(f"{text} is not a regular file")
        if not directory:  # the non-blocking open was only for FIFOs: reads block as usual
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path, roots, mode: str = "rb"):
    """``open_fd`` as a binary file object (what Pillow, send_file and json read from)."""
    return os.fdopen(open_fd(path, roots), mode)


def read_bytes(path, roots) -> bytes:
    with open_file(path, roots) as handle:
        return handle.read()


def walk(folder, roots, recursive: bool, max_depth: int | None = None):
    """Yield (folder path, [file names], [symlink names], cut) through descriptors, as
    ``os.walk`` would (sorted, top first), starting from ``folder`` opened and checked (Refused
    when outside ``roots``). Paths are built on the opened folder's real path; sub-folders are
    opened relative to their parent without following symlinks. ``max_depth``: levels below
    ``folder``; ``cut`` is true for a folder whose sub-folders were not entered for it."""
    top = open_fd(folder, roots, directory=True)
    try:
        yield from _walk(top, str(_real(top, str(folder))), recursive, max_depth, 0)
    finally:
        os.close(top)


def _walk(fd: int, where: str, recursive: bool, max_depth, depth: int):
    files, links, folders = [], [], []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_symlink():
                links.append(entry.name)
            elif entry.is_dir(follow_symlinks=False):
                folders.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                files.append(entry.name)
    deeper = recursive and (max_depth is None or depth < max_depth)
    yield where, sorted(files), sorted(links), bool(recursive and folders and not deeper)
    if not deeper:
        return
    for name in sorted(folders):
        try:
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                            dir_fd=fd)
        except OSError:  # swapped for a link or removed since it was listed: not entered
            continue
        try:
            yield from _walk(child, os.path.join(where, name), recursive, max_depth, depth + 1)
        finally:
            os.close(child)


def real_folder(folder, roots) -> Path:
    """The real path of ``folder`` as opened now, checked (Refused when outside ``roots``)."""
    fd = open_fd(folder, roots, directory=True)
    try:
        return _real(fd, str(folder))
    finally:
        os.close(fd)
