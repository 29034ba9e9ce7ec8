"""The config library: OneTrainer config files in one folder, and the shipped presets.

A user config ``name`` is ``<folder>/<name>.json``; a preset is ``presets/<name>``, read from the
repository's ``configs/presets/`` and never written. Names are checked before any path is built
from them, and the path is checked again after it is resolved, so no name reaches outside the
folder. Writes go to a temporary file that is then renamed into place; each file's version is a
hash of its bytes, and a save that names the version it started from is refused when the file
has changed since (another tab, another person).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from webapp.config.loading import MAX_FILE_BYTES, ConfigFormatError, dumps, parse_json

PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs" / "presets"
PRESET_PREFIX = "presets/"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,99}\Z")  # \Z: "$" would let "name\n" in
NAME_RULE = "a name of letters, digits, space, _ . - (at most 100, starting with a letter or digit)"


class ConfigNotFound(LookupError):
    pass


class InvalidConfigName(ValueError):
    pass


class ReadOnlyConfig(PermissionError):
    pass


class ConfigConflict(RuntimeError):
    pass


def check_name(name) -> str:
    """A user config's name, or InvalidConfigName."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name or name.endswith("."):
        shown = repr(name)[:60] if isinstance(name, str) else type(name).__name__
        raise InvalidConfigName(f"{shown} is not a config name: use {NAME_RULE}")
    return name


def is_preset(name) -> bool:
    return isinstance(name, str) and name.startswith(PRESET_PREFIX)


def sanitize_name(raw) -> str:
    """A config name made from what a person typed or a file's name; InvalidConfigName if nothing
    usable is left."""
    text = str(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    text = text[:-5] if text.lower().endswith(".json") else text
    text = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9 _.\-]+", "-", text))
    return check_name(text.lstrip(" _.-")[:100].rstrip(" .") or "")


def version_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Stored:
    name: str
    raw: dict          # the file's object, as written
    version: str
    read_only: bool


class ConfigLibrary:
    def __init__(self, folder: Path, presets: Path = PRESETS_DIR):
        self.folder, self.presets = Path(folder), Path(presets)

    def path(self, name: str) -> Path:
        folder, stem = (self.presets, name[len(PRESET_PREFIX):]) if is_preset(name) else (self.folder, name)
        path = folder / f"{check_name(stem)}.json"
        # a link in the folder must not lead out of it
        if path.resolve().parent != folder.resolve():
            raise InvalidConfigName(f"{name!r} does not lie in the configs folder")
        return path

    def names(self) -> list[str]:
        return [entry["name"] for entry in self.entries()]

    def entries(self) -> list[dict]:
        found = []
        for folder, prefix in ((self.folder, ""), (self.presets, PRESET_PREFIX)):
            if folder.is_dir():
                found += [{"name": prefix + path.stem, "read_only": bool(prefix), "modified": path.stat().st_mtime}
                          for path in sorted(folder.glob("*.json")) if NAME_PATTERN.match(path.stem)]
        return found

    def read(self, name: str) -> Stored:
        path = self.path(name)
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise ConfigNotFound(f"no config named {name!r}") from None
        if len(data) > MAX_FILE_BYTES:
            raise ConfigFormatError(f"{path.name} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        raw = parse_json(data)
        if not isinstance(raw, dict):
            raise ConfigFormatError(f"{path.name} does not hold a JSON object")
        return Stored(name, raw, version_of(data), is_preset(name))

    def version(self, name: str) -> str | None:
        try:
            return version_of(self.path(name).read_bytes())
        except FileNotFoundError:
            return None

    def save(self, name: str, config: dict, expected_version: str | None = None, create: bool = False) -> str:
        """Write ``config`` as ``name``; return its new version. ``expected_version``: the version it
        was loaded at (refused if the file changed since); ``create``: refuse an existing name."""
        path = self._writable(name)
        data = dumps(config).encode("utf-8")
        with self._lock():
            current = self.version(name)
            if create and current is not None:
                raise ConfigConflict(f"a config named {name!r} exists already: choose another name")
            if expected_version is not None and current != expected_version:
                raise ConfigConflict(f"{name!r} was changed or deleted by someone else since it was loaded; "
                                     "reload it to see the current version (your edits were not saved)")
            self._write(path, data)
        return version_of(data)

    def delete(self, name: str, expected_version: str | None = None) -> None:
        path = self._writable(name)
        with self._lock():
            current = self.version(name)
            if current is None:
                raise ConfigNotFound(f"no config named {name!r}")
            if expected_version is not None and current != expected_version:
                raise ConfigConflict(f"{name!r} was changed by someone else since it was loaded; not deleted")
            path.unlink()

    def rename(self, old: str, new: str) -> None:
        source, target = self._writable(old), self._writable(new)
        with self._lock():
            if not source.is_file():
                raise ConfigNotFound(f"no config named {old!r}")
            if target.exists():
                raise ConfigConflict(f"a config named {new!r} exists already")
            os.rename(source, target)

    def duplicate(self, name: str, new: str | None = None) -> str:
        stored = self.read(name)
        new = new or self.free_name(f"{name.rsplit('/', 1)[-1]} copy")
        self.save(new, stored.raw, create=True)
        return new

    def free_name(self, base: str) -> str:
        base = sanitize_name(base)[:90]
        taken = set(self.names())
        return next(candidate for candidate in (base, *(f"{base} {n}" for n in range(2, 10_000)))
                    if candidate not in taken)

    def _writable(self, name: str) -> Path:
        if is_preset(name):
            raise ReadOnlyConfig(f"{name!r} is a shipped preset and read-only: use \"save as\" to change a copy")
        return self.path(check_name(name))

    @contextmanager
    def _lock(self):
        """One writer at a time across processes, so that a version check and its write are one step."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _write(self, path: Path, data: bytes) -> None:
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def list_configs(config_dir: Path) -> list[str]:
    """The user's configs, then the presets."""
    return ConfigLibrary(config_dir).names()


def config_path(config_dir: Path, name: str) -> Path:
    return ConfigLibrary(config_dir).path(name)
